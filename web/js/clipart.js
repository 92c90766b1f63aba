// Animate Suite / AniClipart: plays the saved animated SVG inside "Save Clipart SVG" and adds an
// "Upload SVG" button to "Load Clipart SVG" (ComfyUI's image upload filters out SVG files).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { showImagePreview, viewUrl } from "./previews.js";

const SAVE_NODE = "AnimateSuiteSaveClipartSVG";
const LOAD_NODE = "AnimateSuiteLoadClipart";
const SIDE_FILE = /_(keypoint|keypoint_scaled)\.svg$/i;

async function uploadFile(file) {
  const body = new FormData();
  body.append("image", file); // ComfyUI stores any uploaded file in its input folder
  body.append("overwrite", "true");
  const response = await api.fetchApi("/upload/image", { method: "POST", body });
  if (response.status !== 200) {
    throw new Error(`${file.name}: ${response.status} ${response.statusText}`);
  }
  const data = await response.json();
  return data.subfolder ? `${data.subfolder}/${data.name}` : data.name;
}

function addUploadButton(node) {
  const svgWidget = node.widgets?.find((w) => w.name === "svg");
  const chooser = document.createElement("input");
  chooser.type = "file";
  chooser.multiple = true; // the SVG together with its _keypoint.svg / _skeleton.txt / _layer.json
  chooser.accept = ".svg,image/svg+xml,.txt,.json";
  chooser.style.display = "none";
  chooser.onchange = async () => {
    let chosen = null;
    try {
      for (const file of chooser.files) {
        const name = await uploadFile(file);
        if (name.toLowerCase().endsWith(".svg") && !SIDE_FILE.test(name) && chosen === null) chosen = name;
      }
    } catch (error) {
      alert(`Upload failed: ${error.message}`);
      return;
    } finally {
      chooser.value = "";
    }
    if (chosen && svgWidget) {
      const values = svgWidget.options.values;
      if (!values.includes(chosen)) values.unshift(chosen);
      svgWidget.value = chosen;
      svgWidget.callback?.(chosen);
    }
  };
  document.body.append(chooser);
  const button = node.addWidget("button", "Upload SVG (+ side files)", null, () => chooser.click(), {
    serialize: false,
  });
  button.serialize = false;
  const onRemoved = node.onRemoved;
  node.onRemoved = function () {
    chooser.remove();
    return onRemoved?.apply(this, arguments);
  };
}

app.registerExtension({
  name: "AnimateSuite.Clipart",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name === SAVE_NODE) {
      const onExecuted = nodeType.prototype.onExecuted;
      nodeType.prototype.onExecuted = function (message) {
        onExecuted?.apply(this, arguments);
        const entry = message?.clipart_svg?.[0];
        if (entry) showImagePreview(this, viewUrl(entry), "animated SVG preview");
      };
    }
    if (nodeData.name === LOAD_NODE) {
      const onNodeCreated = nodeType.prototype.onNodeCreated;
      nodeType.prototype.onNodeCreated = function () {
        const result = onNodeCreated?.apply(this, arguments);
        addUploadButton(this);
        return result;
      };
    }
  },
});
