// Signing an officer's action on an extract (revoke, re-issue) with a security key. The page marks a block
// with data-sign, data-begin and data-finish (URLs) and carries its messages as data-msg-* attributes. begin
// answers {options, ceremony}; finish takes the assertion and answers {redirect}.
(function () {
  'use strict';

  function b64uToBuf(s) {
    s = s.replace(/-/g, '+').replace(/_/g, '/');
    while (s.length % 4) { s += '='; }
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out.buffer;
  }

  function bufToB64u(buf) {
    var bytes = new Uint8Array(buf), bin = '';
    for (var i = 0; i < bytes.length; i++) { bin += String.fromCharCode(bytes[i]); }
    return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  function requestOptions(o) {
    if (PublicKeyCredential.parseRequestOptionsFromJSON) {
      return PublicKeyCredential.parseRequestOptionsFromJSON(o);
    }
    o.challenge = b64uToBuf(o.challenge);
    (o.allowCredentials || []).forEach(function (c) { c.id = b64uToBuf(c.id); });
    return o;
  }

  function assertionJSON(cred) {
    if (typeof cred.toJSON === 'function') { return cred.toJSON(); }
    var r = cred.response;
    return {
      id: cred.id, rawId: bufToB64u(cred.rawId), type: cred.type,
      clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
      response: {
        clientDataJSON: bufToB64u(r.clientDataJSON), authenticatorData: bufToB64u(r.authenticatorData),
        signature: bufToB64u(r.signature), userHandle: r.userHandle ? bufToB64u(r.userHandle) : undefined
      }
    };
  }

  function post(url, body) {
    var m = document.querySelector('meta[name="csrf-token"]');
    return fetch(url, {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'Accept': 'application/json', 'X-CSRF-Token': m ? m.getAttribute('content') : '' },
      body: JSON.stringify(body)
    }).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (data) {
        if (!res.ok) { throw new Error(data.error || 'error'); }
        return data;
      });
    });
  }

  function run(box) {
    var status = box.querySelector('[data-sign-status]');
    var button = box.querySelector('[data-sign-start]');
    function say(key) {
      status.textContent = box.getAttribute('data-msg-' + key) || box.getAttribute('data-msg-error');
      status.setAttribute('data-state', key);
    }
    if (!window.PublicKeyCredential || !navigator.credentials) { say('nowebauthn'); button.disabled = true; return; }
    button.addEventListener('click', function () {
      button.disabled = true;
      say('working');
      post(box.getAttribute('data-begin'), {}).then(function (b) {
        return navigator.credentials.get({ publicKey: requestOptions(b.options.publicKey) }).then(function (cred) {
          return post(box.getAttribute('data-finish') + '?ceremony=' + encodeURIComponent(b.ceremony), assertionJSON(cred));
        });
      }).then(function (done) {
        window.location.assign(done.redirect || window.location.pathname);
      }).catch(function (e) {
        button.disabled = false;
        say(e.name === 'NotAllowedError' || e.name === 'AbortError' ? 'cancelled' : 'error');
      });
    });
  }

  document.addEventListener('DOMContentLoaded', function () {
    var boxes = document.querySelectorAll('[data-sign]');
    for (var i = 0; i < boxes.length; i++) { run(boxes[i]); }
  });
})();
