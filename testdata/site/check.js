// Runs in the browser once everything has loaded: checks that the image and
// the stylesheet arrived, and writes what it found into the page, where a
// test reads it from the dumped DOM.

globalThis.addEventListener("load", () => {
  const image = document.getElementById("pixel");
  const title = document.getElementById("title");
  const style = getComputedStyle(title);
  const results = {
    script: "ran",
    imageWidth: image.naturalWidth,
    imageHeight: image.naturalHeight,
    color: style.color,
    marginLeft: style.marginLeft,
  };
  document.getElementById("results").textContent = JSON.stringify(results);
});
