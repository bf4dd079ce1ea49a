// Small page behaviours, none needed for a page to work: confirmations before an action that cannot be undone
// (form[data-confirm]), and a retrieve form that, once sent, says the download started and offers no second
// try; the list is reloaded when the person comes back to it, so its state is the server's.
(function () {
  'use strict';

  // A form that came back with errors: the summary at the top gets the focus, so it is read first.
  document.addEventListener('DOMContentLoaded', function () {
    var summary = document.getElementById('error-summary');
    if (summary) { summary.focus(); }
  });

  document.addEventListener('submit', function (ev) {
    var form = ev.target;
    var ask = form.getAttribute('data-confirm');
    if (ask && !window.confirm(ask)) {
      ev.preventDefault();
      return;
    }
    if (form.classList.contains('retrieve')) {
      // Let the browser post the form (the download), then replace it: one time is one time.
      window.setTimeout(function () {
        var done = document.createElement('p');
        done.className = 'notice ok';
        done.setAttribute('role', 'status');
        done.setAttribute('data-test', 'downloaded');
        done.textContent = form.getAttribute('data-done');
        form.parentNode.replaceChild(done, form);
        var again = function () {
          if (document.visibilityState === 'visible') { window.location.reload(); }
        };
        document.addEventListener('visibilitychange', again);
        window.addEventListener('focus', again);
      }, 0);
    }
  });
})();
