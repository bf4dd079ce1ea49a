// Passkey ceremonies for the gateway's pages: registration (invitation page), sign-in, and signing an
// officer's decision. No library, no inline script: the page marks a block with
// data-webauthn="register|signin|sign|sign-ceremony" and carries its messages, in the page's language, as
// data-msg-* attributes. A "sign" block also carries the server's options (data-options) and where to post the
// assertion (data-sign-url); a "sign-ceremony" block (revoking or re-issuing an extract) carries the URLs of
// its begin and finish steps (data-begin, data-finish).
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

  // Options from the server are the JSON forms (base64url strings); browsers without the parse*FromJSON
  // helpers get them decoded by hand.
  function creationOptions(o) {
    if (PublicKeyCredential.parseCreationOptionsFromJSON) {
      return PublicKeyCredential.parseCreationOptionsFromJSON(o);
    }
    o.challenge = b64uToBuf(o.challenge);
    o.user.id = b64uToBuf(o.user.id);
    (o.excludeCredentials || []).forEach(function (c) { c.id = b64uToBuf(c.id); });
    return o;
  }

  function requestOptions(o) {
    if (PublicKeyCredential.parseRequestOptionsFromJSON) {
      return PublicKeyCredential.parseRequestOptionsFromJSON(o);
    }
    o.challenge = b64uToBuf(o.challenge);
    (o.allowCredentials || []).forEach(function (c) { c.id = b64uToBuf(c.id); });
    return o;
  }

  function credentialJSON(cred) {
    if (typeof cred.toJSON === 'function') {
      return cred.toJSON();
    }
    var r = cred.response, out = {
      id: cred.id, rawId: bufToB64u(cred.rawId), type: cred.type,
      authenticatorAttachment: cred.authenticatorAttachment || undefined,
      clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
      response: { clientDataJSON: bufToB64u(r.clientDataJSON) }
    };
    if (r.attestationObject) {
      out.response.attestationObject = bufToB64u(r.attestationObject);
      if (r.getTransports) { out.response.transports = r.getTransports(); }
    } else {
      out.response.authenticatorData = bufToB64u(r.authenticatorData);
      out.response.signature = bufToB64u(r.signature);
      if (r.userHandle) { out.response.userHandle = bufToB64u(r.userHandle); }
    }
    return out;
  }

  function csrf() {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.getAttribute('content') : '';
  }

  function post(url, body) {
    return fetch(url, {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'Accept': 'application/json', 'X-CSRF-Token': csrf() },
      body: JSON.stringify(body)
    }).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (data) {
        if (!res.ok) {
          var e = new Error(data.error || 'error');
          e.code = data.error || 'error';
          throw e;
        }
        return data;
      });
    });
  }

  function run(box) {
    var action = box.getAttribute('data-webauthn');
    var status = box.querySelector('[data-webauthn-status]');
    var button = box.querySelector('[data-webauthn-start]');
    function say(key) {
      status.textContent = box.getAttribute('data-msg-' + key) || box.getAttribute('data-msg-error');
      status.setAttribute('data-state', key);
    }
    if (!window.PublicKeyCredential || !navigator.credentials) {
      say('nowebauthn');
      button.disabled = true;
      return;
    }
    button.addEventListener('click', function () {
      // A block that undoes something (revoking an extract) asks first, in the page's language.
      var ask = box.getAttribute('data-confirm');
      if (ask && !window.confirm(ask)) { return; }
      button.disabled = true;
      say('working');
      if (action === 'sign') {
        var opts;
        try { opts = JSON.parse(box.getAttribute('data-options')); } catch (e) { say('error'); return; }
        navigator.credentials.get({ publicKey: requestOptions(opts.publicKey) }).then(function (cred) {
          return post(box.getAttribute('data-sign-url'), credentialJSON(cred));
        }).then(function (done) {
          window.location.assign(done.redirect || '/');
        }).catch(fail);
        return;
      }
      // "sign-ceremony" (revoking or re-issuing an extract) runs like a sign-in against the URLs the page gives.
      var base = action === 'register' ? '/auth/register' : '/auth/signin';
      var beginURL = box.getAttribute('data-begin') || base + '/begin';
      var finishURL = box.getAttribute('data-finish') || base + '/finish';
      // The block's own fields (a revocation's reason) go with the begin step, which signs them.
      var fields = {};
      var inputs = box.querySelectorAll('[name]');
      for (var i = 0; i < inputs.length; i++) { fields[inputs[i].name] = inputs[i].value; }
      if (action === 'register') { fields = { token: box.getAttribute('data-token') }; }
      var begin = post(beginURL, fields);
      begin.then(function (b) {
        var call = action === 'register'
          ? navigator.credentials.create({ publicKey: creationOptions(b.options.publicKey) })
          : navigator.credentials.get({ publicKey: requestOptions(b.options.publicKey) });
        return call.then(function (cred) {
          return post(finishURL + '?ceremony=' + encodeURIComponent(b.ceremony), credentialJSON(cred));
        });
      }).then(function (done) {
        window.location.assign(done.redirect || '/');
      }).catch(fail);
    });
    function fail(e) {
      button.disabled = false;
      if (e.name === 'NotAllowedError' || e.name === 'AbortError') { say('cancelled'); }
      else if (e.name === 'InvalidStateError') { say('exists'); }
      else if (e.name === 'SecurityError' || e.name === 'NotSupportedError') { say('nowebauthn'); }
      else if (e.code) { say(e.code); }
      else { say('error'); }
    }
  }

  document.addEventListener('DOMContentLoaded', function () {
    var boxes = document.querySelectorAll('[data-webauthn]');
    for (var i = 0; i < boxes.length; i++) { run(boxes[i]); }
  });
})();
