// lmarena-enhanced-proxy page script: injected by the proxy into LMArena pages.
// It keeps one authenticated channel to the local tool on the page's own origin, and on request
// sends a stream call from inside the page (cookies and a fresh reCAPTCHA token attach as for the
// site's own client). The proxy rewrites that call and reads the answer as it passes; this script
// only drains the body so the answer keeps flowing.
(function () {
  'use strict';
  var CFG = __BRIDGE_CONFIG__;
  if (window.__lmarenaBridge) return;
  var pageId = (sessionStorage.getItem('__bridge_page') || (Math.random().toString(36).slice(2) + Date.now().toString(36)));
  sessionStorage.setItem('__bridge_page', pageId);
  var ws = null, backoff = 500, jobs = {}, lastState = null, lastKey = null;
  window.__lmarenaBridge = { page: pageId, connected: false, jobs: jobs };

  function send(msg) {
    if (ws && ws.readyState === 1) ws.send(JSON.stringify(msg));
  }
  function pageState() {
    var title = document.title || '';
    if (/just a moment|checking your browser|attention required/i.test(title) || window._cf_chl_opt) return 'challenge';
    var v2 = document.querySelector('#recaptcha-v2-container, iframe[title*="recaptcha challenge" i]');
    if (v2 && v2.offsetParent !== null) return 'needs_human_check';
    return 'ready';
  }
  // Cloudflare's check normally clears by itself and reloads the page. If it has not after a while,
  // reload once, and never again until the page has been ready (no reload loop).
  var challengeSince = null;
  function watchChallenge(state) {
    if (state !== 'challenge') {
      challengeSince = null;
      if (state === 'ready') sessionStorage.removeItem('__bridge_challenge_reload');
      return;
    }
    challengeSince = challengeSince || Date.now();
    if (Date.now() - challengeSince > (CFG.challengeReloadMs || 45000) && !sessionStorage.getItem('__bridge_challenge_reload')) {
      sessionStorage.setItem('__bridge_challenge_reload', String(Date.now()));
      location.reload();
    }
  }
  function connect() {
    var scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    try { ws = new WebSocket(scheme + location.host + CFG.wsPath); } catch (e) { return retry(); }
    ws.onopen = function () {
      backoff = 500;
      lastState = pageState();
      var key = currentKey(null, null);
      lastKey = key.key;
      ws.send(JSON.stringify({ type: 'hello', secret: CFG.secret, page: pageId, url: location.href,
        state: lastState, version: CFG.version, sitekey: key.key, sitekeySource: key.source }));
    };
    ws.onmessage = function (ev) {
      var msg; try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (msg.type === 'welcome') {
        window.__lmarenaBridge.connected = true;
        keep = msg.keep | 0;
        // without a session the proxy cannot tell who this is: reconnect soon to pick up a new cookie
        // (not on a challenge page: the session can only come once the check is passed)
        if (msg.signedIn === false && pageState() === 'ready') setTimeout(function () { if (ws) ws.close(); }, 3000);
      }
      else if (msg.type === 'ping') { send({ type: 'pong', t: msg.t }); }
      else if (msg.type === 'job') { runJob(msg); }
      else if (msg.type === 'mint') { mintAhead(msg); }
      else if (msg.type === 'token_probe') {  // the doctor: can a token be minted here? (the token stays here)
        mintToken(msg.sitekey, msg.fallbackSitekey, msg.action).then(function (m) {
          var ok = !!m.token;
          delete m.token;
          send({ type: 'token_probe', probe: msg.probe, ok: ok, report: m });
        });
      }
      else if (msg.type === 'reserve') { keep = msg.keep | 0; topUp(); }
      else if (msg.type === 'abort') { abortJob(msg); }
    };
    ws.onclose = function () {
      window.__lmarenaBridge.connected = false;
      Object.keys(jobs).forEach(function (id) { jobs[id].abort(); });
      retry();
    };
  }
  function retry() {
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 10000);
  }
  function waitFor(test, ms) {
    return new Promise(function (resolve) {
      var t0 = Date.now();
      (function poll() {
        if (test()) return resolve(true);
        if (Date.now() - t0 > ms) return resolve(false);
        setTimeout(poll, 100);
      })();
    });
  }
  // The reCAPTCHA key: the one the site itself uses now, read from the page at run time (its
  // enterprise.js?render=<key> script, and the keys its own execute() calls pass), so a new deployment's
  // key is used from its next token on. A key given by the tool (arena_recaptcha_sitekey) overrides.
  var siteKeys = { execute: null, script: null };
  function keyFromScripts() {
    var found = null;
    document.querySelectorAll('script[src*="recaptcha/enterprise.js"], script[src*="recaptcha/api.js"]').forEach(function (el) {
      var m = /[?&]render=([A-Za-z0-9_-]{20,60})/.exec(el.src);
      if (m) found = { key: m[1], at: Date.now(), source: 'script' };  // the last tag is the newest
    });
    if (found && (!siteKeys.script || siteKeys.script.key !== found.key)) siteKeys.script = found;
    return siteKeys.script;
  }
  var minting = false;
  function watchExecute() {
    var ent = window.grecaptcha && window.grecaptcha.enterprise;
    if (!ent || !ent.execute || ent.execute.__bridgeWatched) return;
    var original = ent.execute;
    ent.execute = function (key, opts) {
      if (!minting && typeof key === 'string') siteKeys.execute = { key: key, at: Date.now(), source: 'execute' };
      return original.apply(this, arguments);
    };
    ent.execute.__bridgeWatched = true;
  }
  function currentKey(override, fallback) {
    if (override) return { key: override, source: 'option' };
    var script = keyFromScripts(), seen = siteKeys.execute;
    var best = !script ? seen : (!seen ? script : (seen.at >= script.at ? seen : script));
    return best || { key: fallback, source: 'fallback' };
  }
  var readyFor = null;
  async function mintToken(override, fallback, action) {
    var ok = await waitFor(function () { return window.grecaptcha && window.grecaptcha.enterprise; }, 10000);
    if (!ok) return { token: null, key: null, source: 'none', error: 'reCAPTCHA did not load in the page' };
    watchExecute();
    var ent = window.grecaptcha.enterprise;
    if (readyFor !== ent) {  // once per loaded reCAPTCHA (a reloaded one is waited for again)
      await new Promise(function (resolve) { ent.ready(resolve); });
      readyFor = ent;
    }
    var chosen = currentKey(override, fallback);
    minting = true;
    try {
      var token = await window.grecaptcha.enterprise.execute(chosen.key, { action: action });
      return { token: token, key: chosen.key, source: chosen.source, mintedAt: Date.now() };
    } catch (e) {
      return { token: null, key: chosen.key, source: chosen.source, error: String(e && e.message || e) };
    } finally {
      minting = false;
    }
  }
  // Tokens a step ahead. The tool asks for one the moment a request arrives ('mint'), so the page mints
  // while the tool reads the request, leases a conversation and writes the job; the job then takes it.
  // With the premint setting on ('reserve', keep > 0) the page also keeps one ready for each kind of call
  // it has made, minted again before it expires. A token lives 120 s: one older than 100 s is dropped.
  var AHEAD_MAX = 2, AHEAD_FRESH_MS = 100000, ahead = {}, keep = 0, kept = {};
  function aheadOf(action) {
    var now = Date.now();
    ahead[action] = (ahead[action] || []).filter(function (e) { return now - e.at < AHEAD_FRESH_MS; });
    return ahead[action];
  }
  function mintAhead(msg) {
    var list = aheadOf(msg.action);
    if (list.length >= AHEAD_MAX) return;
    var entry = { at: Date.now(), minted: mintToken(msg.sitekey, msg.fallbackSitekey, msg.action) };
    list.push(entry);
    entry.minted.then(function (m) {  // a failed mint is not kept: the job mints its own
      if (!m.token) ahead[msg.action] = aheadOf(msg.action).filter(function (e) { return e !== entry; });
    });
  }
  function topUp() {
    Object.keys(kept).forEach(function (action) {
      while (keep && aheadOf(action).length < Math.min(keep, AHEAD_MAX)) mintAhead(kept[action]);
    });
  }
  setInterval(topUp, 20000);
  async function takeToken(msg) {
    var entry = msg.ahead ? aheadOf(msg.action).shift() : null;
    var minted = entry ? await entry.minted : null;
    if (!minted || !minted.token) return mintToken(msg.sitekey, msg.fallbackSitekey, msg.action);
    minted.ahead = Date.now() - entry.at;  // how long before it was needed its minting began
    return minted;
  }
  // The site's own upload flow (Next.js server actions): the action ids change with each deployment,
  // so they are read from the site's script chunks unless the tool was given them.
  var actionIds = null;
  async function findActions(given) {
    if (given) { var g = given.split(','); return { generateUploadUrl: g[0], getSignedUrl: g[1] }; }
    if (actionIds) return actionIds;
    var found = {};
    var re = /createServerReference\)\("([0-9a-f]{40,44})",[^;]*?"(generateUploadUrl|getSignedUrl)"\)/g;
    var srcs = Array.from(document.querySelectorAll('script[src*="/_next/static/chunks/"]'), function (el) { return el.src; });
    for (var i = 0; i < srcs.length && !(found.generateUploadUrl && found.getSignedUrl); i++) {
      try {
        var text = await (await fetch(srcs[i], { credentials: 'include' })).text(), m;
        while ((m = re.exec(text))) found[m[2]] = m[1];
      } catch (e) { /* a chunk that does not load is skipped */ }
    }
    if (!(found.generateUploadUrl && found.getSignedUrl)) throw new Error('upload actions not found in the page scripts');
    actionIds = found;
    return found;
  }
  async function callAction(id, args) {
    var res = await fetch(location.pathname + location.search, { method: 'POST', credentials: 'include',
      headers: { 'Next-Action': id, 'Accept': 'text/x-component', 'Content-Type': 'text/plain;charset=UTF-8' },
      body: JSON.stringify(args) });
    var text = await res.text();
    var line = text.split('\n').filter(function (l) { return l.slice(0, 2) === '1:'; })[0];
    var data = line ? JSON.parse(line.slice(2)) : null;
    if (!res.ok || !data || !data.success) throw new Error('server action failed (' + res.status + '): ' + text.slice(0, 200));
    return data.data;
  }
  async function uploadFiles(files, given) {
    var ids = await findActions(given), out = {};
    for (var i = 0; i < files.length; i++) {
      var f = files[i], raw = atob(f.data), bytes = new Uint8Array(raw.length);
      for (var j = 0; j < raw.length; j++) bytes[j] = raw.charCodeAt(j);
      var target = await callAction(ids.generateUploadUrl, [f.name, f.contentType]);
      var put = await fetch(target.uploadUrl, { method: 'PUT', body: bytes, headers: { 'Content-Type': f.contentType } });
      if (!put.ok) throw new Error('upload of ' + f.name + ' failed: ' + put.status);
      var signed = await callAction(ids.getSignedUrl, [target.key]);
      out[f.ref] = { name: target.key, contentType: f.contentType, url: signed.url };
    }
    return out;
  }
  async function runJob(msg) {
    var ctrl = new AbortController();
    jobs[msg.job] = ctrl;
    try {
      var body = Object.assign({}, msg.body || {});
      if (msg.uploads && msg.uploads.length) body.__bridgeUploads = await uploadFiles(msg.uploads, msg.uploadActions);
      var minted = null;
      if (msg.action) {
        minted = await takeToken(msg);
        if (minted.token) body.recaptchaV3Token = minted.token;
        minted.sentAt = Date.now();
        delete minted.token;  // only how it was made goes to the tool, never the token
      }
      // redirect 'manual': a host that moved answers 3xx, and a re-sent POST must never turn into a GET
      var sending = fetch(msg.url, { method: msg.method, body: JSON.stringify(body), credentials: 'include',
        redirect: 'manual', signal: ctrl.signal,
        headers: { 'Content-Type': 'text/plain;charset=UTF-8', 'X-Bridge-Job': msg.job } });
      if (minted) {
        kept[msg.action] = { action: msg.action, sitekey: msg.sitekey, fallbackSitekey: msg.fallbackSitekey };
        topUp();
      }
      var res = await sending;
      // one message when the page is done with the request (the proxy sees the answer itself, first-hand):
      // its status, and how its token was made
      var done = { type: 'job_done', job: msg.job, status: res.status, redirected: res.type === 'opaqueredirect' };
      if (minted) done.recaptcha = minted;
      if (res.body && res.ok) {
        var reader = res.body.getReader();
        while (!(await reader.read()).done) { /* the proxy reads the answer as it passes */ }
      }
      send(done);
    } catch (e) {
      send({ type: 'job_error', job: msg.job, message: String(e && e.message || e) });
    } finally {
      delete jobs[msg.job];
    }
  }
  // The client went away: stop reading, and press the site's own Stop for the turn, as a person would,
  // so the site stops generating too.
  function abortJob(msg) {
    var c = jobs[msg.job];
    if (c) c.abort();
    if (msg.stopUrl) {
      fetch(msg.stopUrl, { method: 'POST', credentials: 'include', redirect: 'manual',
        headers: { 'Content-Type': 'text/plain;charset=UTF-8' },
        body: JSON.stringify({ stoppedAt: new Date().toISOString() }) }).catch(function () {});
    }
  }
  setInterval(function () {
    var state = pageState();
    watchChallenge(state);
    watchExecute();
    var key = currentKey(null, null);
    if (state !== lastState || key.key !== lastKey) {
      lastState = state; lastKey = key.key;
      send({ type: 'state', state: state, url: location.href, sitekey: key.key, sitekeySource: key.source });
    }
  }, 1000);
  connect();
})();
