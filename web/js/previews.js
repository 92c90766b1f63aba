// Animate Suite: previews the front end cannot show by itself, in an <img> inside the node.
// - Save Animation's GIFs: the front end shows an animated output as a <video> unless the file is
//   WebP/PNG, and a <video> cannot play a GIF; the node reports GIFs under their own key instead.
// - Save Clipart SVG's animated SVG (an <img> plays its SMIL animation and keeps it sandboxed).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const SAVE_ANIMATION_NODE = "AnimateSuiteSaveAnimation";
const GIF_KEY = "animate_suite_gif";
export const PREVIEW_WIDGET = "animate_suite_preview";

export function viewUrl(entry) {
  const params = new URLSearchParams({
    filename: entry.filename,
    subfolder: entry.subfolder || "",
    type: entry.type || "output",
  });
  return api.apiURL(`/view?${params.toString()}&rand=${Date.now()}`);
}

export function showImagePreview(node, url, alt) {
  let widget = node.widgets?.find((w) => w.name === PREVIEW_WIDGET);
  if (!widget) {
    const img = document.createElement("img");
    img.style.width = "100%";
    img.style.height = "100%";
    img.style.objectFit = "contain";
    widget = node.addDOMWidget(PREVIEW_WIDGET, "preview", img, {
      serialize: false,
      hideOnZoom: false,
      getMinHeight: () => 200,
    });
    widget.img = img;
  }
  widget.img.alt = alt;
  widget.img.src = url;
  const wanted = node.computeSize();
  node.setSize([Math.max(node.size[0], wanted[0]), Math.max(node.size[1], wanted[1])]);
  app.graph.setDirtyCanvas(true, true);
}

export function removeImagePreview(node) {
  const index = node.widgets?.findIndex((w) => w.name === PREVIEW_WIDGET) ?? -1;
  if (index < 0) return;
  node.widgets[index].onRemove?.();
  node.widgets.splice(index, 1);
  app.graph.setDirtyCanvas(true, true);
}

app.registerExtension({
  name: "AnimateSuite.Previews",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== SAVE_ANIMATION_NODE) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const gif = message?.[GIF_KEY]?.[0];
      if (gif) showImagePreview(this, viewUrl(gif), "animated GIF preview");
      else removeImagePreview(this);
    };
  },
});
