// The pass page's Print button (a file of its own: the CSP forbids inline script): the
// button's form counts the print at the node, then the print dialog opens. Not counted (an
// expired session, say): the page is loaded again, which shows why.
(function () {
  var form = document.getElementById('print-form');
  if (!form) {
    return;
  }
  form.addEventListener('submit', function (event) {
    event.preventDefault();
    fetch(form.action, {
      method: 'POST',
      body: new URLSearchParams(new FormData(form)),
      credentials: 'same-origin'
    }).then(function (answer) {
      if (answer.status === 204) {
        window.print();
      } else {
        window.location.reload();
      }
    }, function () {
      window.location.reload();
    });
  });
})();
