// Copy buttons for the `hooks …` commands. Without JavaScript they stay
// hidden and the command is there to select (a click selects it whole).
function select(code) {
  var range = document.createRange();
  range.selectNodeContents(code);
  var sel = window.getSelection();
  sel.removeAllRanges();
  sel.addRange(range);
}
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("button[data-copy]").forEach(function (b) { b.hidden = false; });
});
document.addEventListener("click", function (e) {
  var button = e.target.closest("button[data-copy]");
  if (!button) return;
  var code = button.parentElement.querySelector("code");
  var done = function () {
    button.textContent = "Copied";
    setTimeout(function () { button.textContent = "Copy"; }, 1500);
  };
  var fallback = function () {
    select(code);
    button.textContent = "Selected: press Ctrl+C";
    setTimeout(function () { button.textContent = "Copy"; }, 2500);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(button.getAttribute("data-copy")).then(done, fallback);
  } else {
    fallback();
  }
});
