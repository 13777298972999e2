// The pass page's Print button (a file of its own: the CSP forbids inline script).
(function () {
  var button = document.getElementById('print');
  if (button) {
    button.addEventListener('click', function () { window.print(); });
  }
})();
