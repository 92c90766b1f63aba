// Plays a Lottie JSON file with the official lottie-web player in headless Chromium and saves frames as PNG.
// node play_lottie.mjs ANIMATION.json OUT_DIR RENDERER(svg|canvas) FRAMES(comma-separated) CHROMIUM_PATH
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const [animationPath, outDir, renderer, frameList, executablePath] = process.argv.slice(2);
const data = JSON.parse(readFileSync(animationPath, "utf8"));
const frames = frameList.split(",").map(Number);
mkdirSync(outDir, { recursive: true });

const browser = await chromium.launch({ executablePath, args: ["--no-sandbox", "--disable-gpu", "--force-color-profile=srgb"] });
try {
  const page = await browser.newPage({ viewport: { width: data.w, height: data.h }, deviceScaleFactor: 1 });
  await page.setContent(`<html><body style="margin:0;background:#ffffff">
    <div id="stage" style="width:${data.w}px;height:${data.h}px"></div></body></html>`);
  await page.addScriptTag({ path: require.resolve("lottie-web/build/player/lottie.min.js") });
  await page.evaluate(({ data, renderer }) => new Promise((resolve) => {
    window.anim = lottie.loadAnimation({
      container: document.getElementById("stage"), renderer, loop: false, autoplay: false, animationData: data,
    });
    if (window.anim.isLoaded) resolve(); else window.anim.addEventListener("DOMLoaded", resolve);
  }), { data, renderer });
  for (const frame of frames) {
    await page.evaluate((frame) => window.anim.goToAndStop(frame, true), frame);
    await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
    writeFileSync(`${outDir}/frame_${frame}.png`, await page.locator("#stage").screenshot());
  }
  const drawnWith = await page.evaluate(() => document.getElementById("stage").firstElementChild.tagName.toLowerCase());
  console.log(JSON.stringify({ played: frames.length, renderer, drawnWith, version: await page.evaluate(() => lottie.version) }));
} finally {
  await browser.close();
}
