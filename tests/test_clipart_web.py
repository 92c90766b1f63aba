"""The web extensions (web/js/clipart.js, web/js/previews.js) run under Node with stand-ins for ComfyUI's app and api."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

APP = """export const app = {
  registerExtension(extension) { globalThis.extensions = { ...globalThis.extensions, [extension.name]: extension }; },
  graph: { setDirtyCanvas() { globalThis.redraws = (globalThis.redraws || 0) + 1; } },
};"""
API = """export const api = {
  apiURL: (path) => "/api" + path,
  async fetchApi(url, options) {
    const file = options.body.get("image");
    globalThis.uploads.push({ url, method: options.method, name: file.name, overwrite: options.body.get("overwrite") });
    return { status: 200, json: async () => ({ name: file.name, subfolder: "", type: "input" }) };
  },
};"""
HARNESS = """
const elements = [];
globalThis.uploads = [];
globalThis.alert = (text) => { globalThis.alerted = text; };
globalThis.document = {
  createElement(tag) { const element = { tag, style: {}, remove() { this.removed = true; }, click() {} }; elements.push(element); return element; },
  body: { append() {} },
};
await import("./extensions/pack/clipart.js");
const extension = globalThis.extensions["AnimateSuite.Clipart"];
const previews = globalThis.extensions["AnimateSuite.Previews"];

function previewHost() {
  return {
    widgets: [], size: [200, 100],
    computeSize: () => [220, 320],
    setSize(size) { this.size = size; },
    addDOMWidget(name, type, element, options) { const widget = { name, type, element, options }; this.widgets.push(widget); return widget; },
  };
}

function SaveAnimationNode() {}
await previews.beforeRegisterNodeDef(SaveAnimationNode, { name: "AnimateSuiteSaveAnimation" });
const gifNode = Object.assign(new SaveAnimationNode(), previewHost());
gifNode.onExecuted({ animate_suite_gif: [{ filename: "anim_00001_.gif", subfolder: "AnimateSuite", type: "output" }] });
const gifSrc = gifNode.widgets[0]?.element.src;
gifNode.onExecuted({ images: [{ filename: "anim_00002_.mp4", subfolder: "AnimateSuite", type: "output" }], animated: [true] });
const gifWidgetsAfterMp4 = gifNode.widgets.length;

function SaveNode() {}
await extension.beforeRegisterNodeDef(SaveNode, { name: "AnimateSuiteSaveClipartSVG" });
const save = Object.assign(new SaveNode(), previewHost());
save.onExecuted({ clipart_svg: [{ filename: "clip 1.svg", subfolder: "AnimateSuite", type: "output" }] });
save.onExecuted({ clipart_svg: [{ filename: "clip 2.svg", subfolder: "AnimateSuite", type: "output" }] });

function LoadNode() {}
await extension.beforeRegisterNodeDef(LoadNode, { name: "AnimateSuiteLoadClipart" });
const load = new LoadNode();
const choice = { name: "svg", value: "old.svg", options: { values: ["old.svg"] }, callback(value) { this.picked = value; } };
Object.assign(load, {
  widgets: [choice],
  addWidget(type, name, value, callback, options) { const widget = { type, name, callback, options }; this.widgets.push(widget); return widget; },
});
load.onNodeCreated();
const chooser = elements.find((e) => e.tag === "input");
chooser.files = [new File(["<svg/>"], "cat_keypoint.svg"), new File(["<svg/>"], "cat.svg"), new File(["0 1"], "cat_skeleton.txt")];
await chooser.onchange();
load.onRemoved();

console.log(JSON.stringify({
  saveWidgets: save.widgets.map((w) => ({ name: w.name, serialize: w.options.serialize, src: w.element.src, tag: w.element.tag })),
  size: save.size, redraws: globalThis.redraws, gifSrc, gifWidgetsAfterMp4,
  loadWidgets: load.widgets.map((w) => ({ name: w.name, type: w.type || null, serialize: w.options?.serialize ?? null })),
  chooser: { accept: chooser.accept, multiple: chooser.multiple, removed: !!chooser.removed },
  uploads: globalThis.uploads, value: choice.value, values: choice.options.values, picked: choice.picked,
}));
"""


def test_preview_and_upload_wiring(tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "app.js").write_text(APP)
    (tmp_path / "scripts" / "api.js").write_text(API)
    (tmp_path / "extensions" / "pack").mkdir(parents=True)
    for script in ("clipart.js", "previews.js"):
        shutil.copy(REPO / "web" / "js" / script, tmp_path / "extensions" / "pack" / script)
    (tmp_path / "package.json").write_text('{"type": "module"}')
    (tmp_path / "harness.js").write_text(HARNESS)
    result = subprocess.run([node, "harness.js"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    state = json.loads(result.stdout.strip().splitlines()[-1])
    previews = state["saveWidgets"]
    assert len(previews) == 1, "a second run reuses the preview"
    assert previews[0]["tag"] == "img" and previews[0]["serialize"] is False
    assert previews[0]["src"].startswith("/api/view?filename=clip+2.svg&subfolder=AnimateSuite&type=output")
    assert state["size"] == [220, 320]
    assert state["redraws"] == 4, "a redraw for each preview shown (a GIF, two SVGs) and for the GIF removed again"
    assert state["gifSrc"].startswith("/api/view?filename=anim_00001_.gif&subfolder=AnimateSuite&type=output")
    assert state["gifWidgetsAfterMp4"] == 0, "an MP4 is the front end's own video preview: the GIF <img> goes"
    button = state["loadWidgets"][1]
    assert button["type"] == "button" and button["serialize"] is False, "the button must not shift saved widget values"
    assert [u["name"] for u in state["uploads"]] == ["cat_keypoint.svg", "cat.svg", "cat_skeleton.txt"]
    assert all(u["url"] == "/upload/image" and u["method"] == "POST" for u in state["uploads"])
    assert state["value"] == "cat.svg" and state["picked"] == "cat.svg" and state["values"][0] == "cat.svg"
    assert state["chooser"] == {"accept": ".svg,image/svg+xml,.txt,.json", "multiple": True, "removed": True}
