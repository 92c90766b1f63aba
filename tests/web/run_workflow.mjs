// Opens one UI-format workflow in the real ComfyUI front end (headless Chromium), shrinks the expensive
// widgets, queues it from the page and reports what a user would see, as one JSON line on stdout.
//
//   node run_workflow.mjs --server http://127.0.0.1:8188 --workflow wf.json \
//        --shrink '{"lower": {"steps": 2}, "zeroMeansPreset": []}' \
//        --screenshot out.png [--timeout 900]
//
// Report: missing node types, dialogs open after loading, the pack's nodes whose loaded widget values differ
// from the stored ones, the /prompt reply (validation errors), the
// /history status and outputs, the preview each output node shows, overlapping node boxes after the run,
// console errors and failed requests of the pack's web extension.
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

const EXTENSION_PATH = "/extensions/ComfyUI-Animate-Suite/";

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i += 2) args[argv[i].replace(/^--/, "")] = argv[i + 1];
  return args;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function visibleDialogs(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll(".p-dialog, [role=dialog]")]
      .filter((el) => el.offsetParent !== null || getComputedStyle(el).position === "fixed")
      .map((el) => el.innerText.trim().replace(/\s+/g, " ").slice(0, 400))
      .filter((text) => text.length > 0));
}

async function closeDialogs(page) {
  for (let i = 0; i < 3; i++) {
    if ((await visibleDialogs(page)).length === 0) return;
    await page.keyboard.press("Escape");
    await sleep(300);
  }
}

// Lowers every number widget named in `shrink.lower` to that value (clamped to the widget's minimum);
// widgets named in `shrink.zeroMeansPreset` are also set where they hold 0 (a preset, e.g. 25 frames).
// Returns what changed.
async function shrinkWidgets(page, shrink) {
  return page.evaluate(({ lower, zeroMeansPreset }) => {
    const changed = [];
    for (const node of window.app.graph._nodes) {
      for (const widget of node.widgets ?? []) {
        if (!(widget.name in lower) || typeof widget.value !== "number") continue;
        const min = widget.options?.min ?? -Infinity;
        const value = Math.max(lower[widget.name], min);
        const preset = widget.value === 0 && zeroMeansPreset.includes(widget.name);
        if (value >= widget.value && !preset) continue;
        changed.push(`${node.type}#${node.id}.${widget.name}: ${widget.value} -> ${value}`);
        widget.value = value;
        widget.callback?.(value, window.app.canvas, node);
      }
    }
    window.app.graph.setDirtyCanvas(true, true);
    return changed;
  }, shrink);
}

async function waitForHistory(server, promptId, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const history = await (await fetch(`${server}/api/history/${promptId}`)).json();
    const entry = history[promptId];
    if (entry && entry.status && (entry.status.completed || entry.status.status_str === "error")) return entry;
    await sleep(500);
  }
  return null;
}

// What each output node shows: loaded <img>/<video> in its DOM widgets or node.imgs.
async function previews(page, nodeIds) {
  return page.evaluate((ids) => {
    const seen = {};
    for (const id of ids) {
      const node = window.app.graph.getNodeById(Number(id)) ?? window.app.graph.getNodeById(id);
      const found = [];  // one entry per loaded <img>/<video>
      for (const img of node?.imgs ?? []) {
        if (img.complete && img.naturalWidth > 0) found.push(`img ${img.naturalWidth}x${img.naturalHeight}`);
      }
      const roots = (node?.widgets ?? []).map((w) => w.element).filter(Boolean);
      if (node?.videoContainer) roots.push(node.videoContainer);
      for (const root of roots) {
        const media = [root, ...root.querySelectorAll("img, video")].filter((el) => el.tagName === "IMG" || el.tagName === "VIDEO");
        for (const el of media) {
          if (el.tagName === "IMG" && el.complete && el.naturalWidth > 0) found.push(`img ${el.naturalWidth}x${el.naturalHeight}`);
          if (el.tagName === "VIDEO" && el.videoWidth > 0) found.push(`video ${el.videoWidth}x${el.videoHeight}`);
        }
      }
      seen[id] = [...new Set(found)];
    }
    return seen;
  }, nodeIds);
}

// The pack's nodes whose widget values, right after loading (before any shrinking), differ from the values
// stored in the workflow file: what a saved workflow would lose if a node's widgets moved.
async function widgetMismatches(page, workflow) {
  return page.evaluate((wf) => {
    const mismatches = [];
    for (const saved of wf.nodes) {
      if (!saved.type.startsWith("AnimateSuite") || !Array.isArray(saved.widgets_values)) continue;
      const node = window.app.graph.getNodeById(saved.id);
      const loaded = node ? node.serialize().widgets_values : null;
      if (JSON.stringify(loaded) !== JSON.stringify(saved.widgets_values))
        mismatches.push(`${saved.type}#${saved.id}: saved ${JSON.stringify(saved.widgets_values)}, loaded ${JSON.stringify(loaded)}`);
      // Each value must also suit the widget it landed in (a value shifted by one slot usually does not).
      for (const widget of node?.widgets ?? []) {
        const expected = { number: "number", toggle: "boolean", combo: "string", text: "string", customtext: "string" }[widget.type];
        if (expected && widget.name !== "control_after_generate" && typeof widget.value !== expected)
          mismatches.push(`${saved.type}#${saved.id}.${widget.name} (${widget.type}) holds ${JSON.stringify(widget.value)}`);
      }
    }
    return mismatches;
  }, workflow);
}

async function nodeBoxes(page) {
  return page.evaluate(() => window.app.graph._nodes.map((node) => {
    const [x, y, w, h] = node.getBounding();
    return { id: node.id, x, y, w, h, size: [node.size[0], node.size[1]] };
  }));
}

async function overlaps(page) {
  return page.evaluate(() => {
    const boxes = window.app.graph._nodes.map((node) => {
      const [x, y, w, h] = node.getBounding();
      return { name: `${node.title ?? node.type}#${node.id}`, x, y, w, h };
    });
    const pairs = [];
    for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        const a = boxes[i], b = boxes[j];
        const dx = Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x);
        const dy = Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y);
        if (dx > 0 && dy > 0) pairs.push(`${a.name} x ${b.name} (${Math.round(dx)}x${Math.round(dy)} px)`);
      }
    }
    return pairs;
  });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const server = args.server;
  const workflow = JSON.parse(readFileSync(args.workflow, "utf8"));
  const shrink = JSON.parse(args.shrink ?? '{"lower": {}, "zeroMeansPreset": []}');
  const timeoutMs = Number(args.timeout ?? 900) * 1000;
  const report = { extensionErrors: [], pageErrors: [] };

  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
    page.on("console", (message) => {
      const where = message.location()?.url ?? "";
      if (message.type() === "error" && (where.includes(EXTENSION_PATH) || message.text().includes(EXTENSION_PATH)))
        report.extensionErrors.push(`${message.text()} (${where})`);
    });
    page.on("pageerror", (error) => {
      report.pageErrors.push(String(error.stack ?? error).slice(0, 600));
      if (String(error.stack ?? "").includes(EXTENSION_PATH)) report.extensionErrors.push(String(error.stack).slice(0, 600));
    });
    page.on("response", (response) => {
      if (response.url().includes(EXTENSION_PATH) && response.status() >= 400)
        report.extensionErrors.push(`HTTP ${response.status()} ${response.url()}`);
    });

    await page.goto(server, { waitUntil: "domcontentloaded" });
    await page.waitForFunction(() => window.app?.graph && window.app.canvas && window.LiteGraph, null, { timeout: 120000 });
    await sleep(2000);
    await closeDialogs(page);

    await page.evaluate((wf) => window.app.loadGraphData(wf), workflow);
    await sleep(2500);
    report.missingNodeTypes = await page.evaluate((wf) =>
      [...new Set(wf.nodes.map((n) => n.type))].filter((type) => !(type in window.LiteGraph.registered_node_types)), workflow);
    report.dialogsOnLoad = await visibleDialogs(page);
    report.widgetsChecked = workflow.nodes.filter((n) => n.type.startsWith("AnimateSuite") && Array.isArray(n.widgets_values)).length;
    report.widgetMismatches = await widgetMismatches(page, workflow);
    await closeDialogs(page);
    report.shrunk = await shrinkWidgets(page, shrink);

    const started = Date.now();
    const promptReply = page.waitForResponse((r) => r.url().endsWith("/prompt") && r.request().method() === "POST",
                                             { timeout: 120000 });
    await page.evaluate(() => window.app.queuePrompt(0, 1));
    const reply = await promptReply;
    report.promptStatus = reply.status();
    report.promptReply = await reply.json().catch(() => null);
    const promptId = report.promptReply?.prompt_id;
    if (promptId) {
      const entry = await waitForHistory(server, promptId, timeoutMs);
      report.seconds = (Date.now() - started) / 1000;
      report.status = entry?.status ?? { status_str: "timeout" };
      report.outputs = entry?.outputs ?? {};
      const outputIds = Object.keys(report.outputs);
      const deadline = Date.now() + 20000;
      do {
        await sleep(500);
        report.previews = await previews(page, outputIds);
      } while (Date.now() < deadline && Object.values(report.previews).some((found) => found.length === 0));
    }
    report.dialogsAfterRun = await visibleDialogs(page);
    await closeDialogs(page);
    report.overlaps = await overlaps(page);
    report.boxes = await nodeBoxes(page);  // what scripts/relayout_workflows.py spaces the example layouts with
    if (args.screenshot) await page.screenshot({ path: args.screenshot });
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(report) + "\n");
}

main().catch((error) => {
  process.stderr.write(String(error.stack ?? error) + "\n");
  process.exit(2);
});
