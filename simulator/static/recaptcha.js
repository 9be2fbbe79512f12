(function () {
  // Stand-in for reCAPTCHA Enterprise: tokens are minted by the (simulated) site and are
  // single-use and bound to the action they were minted for.
  var readyQ = [];
  window.grecaptcha = { enterprise: {
    ready: function (cb) { setTimeout(cb, 0); },
    execute: function (sitekey, opts) {
      return fetch('/__sim/recaptcha', { method: 'POST', headers: {'Content-Type': 'application/json'},
        body: JSON.stringify({ sitekey: sitekey, action: (opts && opts.action) || '' }) })
        .then(function (r) { return r.json(); }).then(function (j) { return j.token; });
    } } };
})();
