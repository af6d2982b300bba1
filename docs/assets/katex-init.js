// Render the maths that pymdownx.arithmatex (generic: true) leaves in the page:
// <span class="arithmatex">\(...\)</span> inline and <div class="arithmatex">\[...\]</div>
// display, with the KaTeX shipped in docs/assets/katex (nothing is fetched from the network).
(function () {
  "use strict";

  function renderMath(root) {
    var nodes = (root || document).querySelectorAll(".arithmatex");
    for (var i = 0; i < nodes.length; i++) {
      var el = nodes[i];
      if (el.querySelector(".katex")) continue; // already rendered
      var tex = (el.textContent || "").trim();
      var display = el.tagName === "DIV";
      if ((tex.startsWith("\\(") && tex.endsWith("\\)")) ||
          (tex.startsWith("\\[") && tex.endsWith("\\]"))) {
        display = tex.startsWith("\\[");
        tex = tex.slice(2, -2);
      }
      // throwOnError false: a formula KaTeX cannot parse shows as a red .katex-error
      // element (the docs check looks for those) instead of stopping the page's maths.
      katex.render(tex, el, { displayMode: display, throwOnError: false });
    }
  }

  if (typeof document$ !== "undefined") {
    // Material's instant navigation replaces the page body without a reload.
    document$.subscribe(function () { renderMath(document); });
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { renderMath(document); });
  } else {
    renderMath(document);
  }
})();
