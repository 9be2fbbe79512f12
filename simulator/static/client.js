// The simulated site's own client: what the site's front end does, reduced to one chat.
// Body format "messages" sends the whole messages[] chain; "user_message" sends a single userMessage and a
// token-only retry. Direct chats are sent in the page's direct mode ("direct-battle" in 2026, with a
// modelBMessageId and userMessage.metadata as the 2026 client sends them).
(function () {
  'use strict';
  var root = document.getElementById('chat');
  var wholeChain = root.dataset.bodyFormat === 'messages';
  var directMode = root.dataset.directMode || 'direct';
  var sessionId = null;
  var history = [];          // messages as the client keeps them
  var lastAssistantId = null;
  window.__simChunks = [];   // arrival time (ms) and size of every network chunk of the page's own answers
  window.__simAnswers = [];  // finished answers: {sessionId, messageId, text}

  function uuid7() {
    var ms = Date.now().toString(16).padStart(12, '0');
    var r = crypto.getRandomValues(new Uint8Array(10));
    var hex = Array.from(r, function (b) { return b.toString(16).padStart(2, '0'); }).join('');
    var v = ms + '7' + hex.slice(0, 3) + ((parseInt(hex.slice(3, 4), 16) & 3) | 8).toString(16) + hex.slice(4, 19);
    return v.slice(0, 8) + '-' + v.slice(8, 12) + '-' + v.slice(12, 16) + '-' + v.slice(16, 20) + '-' + v.slice(20, 32);
  }
  function token(action) {
    return new Promise(function (resolve) { grecaptcha.enterprise.ready(resolve); })
      // the key of the current deployment: a new one can arrive while the page runs
      .then(function () { return grecaptcha.enterprise.execute(root.dataset.sitekey, { action: action }); });
  }
  function bubble(role, text) {
    var div = document.createElement('div');
    div.className = 'msg ' + role;
    div.textContent = text;
    document.getElementById('messages').appendChild(div);
    return div;
  }
  function modelId() { return document.getElementById('model').value; }
  function modality() {
    var sel = document.getElementById('model');
    return sel.options[sel.selectedIndex].dataset.modality || 'chat';
  }
  function msg(id, role, content, parents, model, status) {
    return { id: id, role: role, content: content, experimental_attachments: [], parentMessageIds: parents,
      participantPosition: 'a', modelId: model, evaluationSessionId: sessionId, status: status, failureReason: null };
  }

  // divs: participant position -> bubble; onDone gets the text of each position
  async function stream(url, method, body, divs, onDone) {
    var res = await fetch(url, { method: method, body: JSON.stringify(body), credentials: 'include',
      headers: { 'Content-Type': 'text/plain;charset=UTF-8' } });
    var first = divs.a || divs.b;
    if (!res.ok) { first.textContent = 'Error ' + res.status + ': ' + (await res.text()); first.dataset.status = 'failed'; return; }
    var reader = res.body.getReader(), decoder = new TextDecoder(), buf = '', texts = { a: '', b: '' };
    for (;;) {
      var part = await reader.read();
      if (part.done) break;
      window.__simChunks.push({ t: performance.now(), n: part.value.length });
      buf += decoder.decode(part.value, { stream: true });
      var lines = buf.split('\n'); buf = lines.pop();
      lines.forEach(function (line) {
        var pos = line.charAt(0), code = line.slice(1, 3);
        if (!divs[pos]) return;
        if (code === '0:') { texts[pos] += JSON.parse(line.slice(3)); divs[pos].textContent = texts[pos]; }
        if (code === '2:') {  // data: an image, or (2026) a heartbeat that only keeps the request alive
          var item = JSON.parse(line.slice(3))[0];
          if (item && item.type === 'image') { texts[pos] = '![image](' + item.image + ')'; divs[pos].textContent = texts[pos]; }
        }
      });
    }
    Object.keys(divs).forEach(function (pos) { divs[pos].dataset.status = 'success'; });
    onDone(texts);
  }

  async function send() {
    var input = document.getElementById('input');
    var content = input.value; input.value = '';
    var battle = document.getElementById('mode').value === 'battle';
    var userId = uuid7(), asstId = uuid7(), asstBId = uuid7();
    var first = sessionId === null;
    if (first) { sessionId = uuid7(); window.history.replaceState(null, '', '/c/' + sessionId); }
    var userMsg = msg(userId, 'user', content, lastAssistantId ? [].concat(lastAssistantId) : [], null, 'pending');
    var asstMsg = msg(asstId, 'assistant', '', [userId], battle ? null : modelId(), 'pending');
    var asstB = msg(asstBId, 'assistant', '', [userId], null, 'pending');
    asstB.participantPosition = 'b';
    var body = { id: sessionId, userMessageId: userId, modelAMessageId: asstId, modality: modality(),
      recaptchaV3Token: await token('chat_submit') };
    if (battle) { body.modelBMessageId = asstBId; } else { body.modelAId = modelId(); }
    if (directMode === 'direct-battle') body.modelBMessageId = asstBId;
    if (first || directMode === 'direct-battle') body.mode = battle ? 'battle' : directMode;
    if (wholeChain) {
      body.mode = battle ? 'battle' : directMode;
      body.messages = history.concat(battle ? [userMsg, asstMsg, asstB] : [userMsg, asstMsg]);
    } else {
      body.userMessage = { content: content, experimental_attachments: [] };
      if (directMode === 'direct-battle') body.userMessage.metadata = {};
    }
    if (modality() === 'image') body.featureFlags = { editImageButtonEnabled: 'treatment-1' };
    bubble('user', content);
    var divs = { a: bubble('assistant', '') };
    divs.a.dataset.messageId = asstId;
    if (battle) { divs.b = bubble('assistant', ''); divs.b.dataset.messageId = asstBId; divs.b.dataset.position = 'b'; }
    var url = first ? '/nextjs-api/stream/create-evaluation' : '/nextjs-api/stream/post-to-evaluation/' + sessionId;
    await stream(url, 'POST', body, divs, function (texts) {
      userMsg.status = 'success'; asstMsg.status = 'success'; asstMsg.content = texts.a;
      history.push(userMsg, asstMsg);
      lastAssistantId = battle ? [asstId, asstBId] : asstId;
      window.__simAnswers.push({ sessionId: sessionId, messageId: asstId, text: texts.a, position: 'a' });
      addRetry(divs.a, asstMsg, 'a');
      if (battle) {
        asstB.status = 'success'; asstB.content = texts.b; history.push(asstB);
        window.__simAnswers.push({ sessionId: sessionId, messageId: asstBId, text: texts.b, position: 'b' });
        addRetry(divs.b, asstB, 'b');
      }
    });
  }

  function addRetry(div, asstMsg, pos) {
    var btn = document.createElement('button');
    btn.textContent = 'Retry'; btn.className = 'retry retry-' + pos;
    btn.onclick = async function () {
      var body = { recaptchaV3Token: await token('chat_retry') };
      if (wholeChain) {
        var upto = history.slice(0, history.indexOf(asstMsg)).filter(function (m) { return m.role === 'user' || m.participantPosition === pos; });
        body.messages = upto; body.modelId = asstMsg.modelId;
      }
      div.textContent = '';
      var divs = {}; divs[pos] = div;
      await stream('/nextjs-api/stream/retry-evaluation-session-message/' + sessionId + '/messages/' + asstMsg.id,
        'PUT', body, divs, function (texts) {
          asstMsg.content = texts[pos];
          window.__simAnswers.push({ sessionId: sessionId, messageId: asstMsg.id, text: texts[pos], position: pos });
        });
    };
    div.after(btn);
  }

  document.getElementById('send').addEventListener('click', send);
  // the site's own checks: a visible reCAPTCHA v2 box, and signing in
  var v2 = document.getElementById('v2-solve');
  if (v2) v2.addEventListener('click', function () {
    fetch('/__sim/v2-solve', { method: 'POST', credentials: 'include' }).then(function () {
      document.getElementById('recaptcha-v2-container').remove();
    });
  });
  var signIn = document.getElementById('sign-in');
  if (signIn) signIn.addEventListener('click', function () {
    // signing in reloads the page, as the site's own sign-in does
    fetch('/__sim/sign-in', { method: 'POST', credentials: 'include' }).then(function () { location.reload(); });
  });
})();
