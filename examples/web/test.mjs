// End-to-end test of the classification page (README, "In the browser"):
//   1. the native run: the classify example on the bundled photos, results as JSON;
//   2. the page, built by build.sh, served on localhost and opened in headless Chromium
//      (Debian's /usr/bin/chromium with WebGPU enabled, driven by playwright-core);
//   3. for every bundled photo, the page's top-1 in FP32, FP16 and INT8 must equal the
//      native run's (INT8: the static model the page loads was saved by that same
//      native calibration); a screenshot goes to docs/web-page.png.
// Usage: bash examples/web/build.sh && (cd examples/web && npm install && npm test)
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");
const PHOTOS = ["chelsea.png", "coffee.png", "rocket.jpg"];
const PAIRS = { FP32: "FP32", FP16: "FP16", INT8: "INT8 static" };

function fail(msg) {
  console.error(`FAIL: ${msg}`);
  process.exit(1);
}

// 1. The native run.
const json = join(mkdtempSync(join(tmpdir(), "wgpu-quant-web-")), "native.json");
console.log("== native: cargo run --release --example classify -- --runs 1 --json", json);
execFileSync("cargo", ["run", "--release", "--example", "classify", "--", "--runs", "1", "--json", json], {
  cwd: root,
  stdio: "inherit",
});
const native = JSON.parse(readFileSync(json, "utf8"));

// 2. The page.
const port = 8000 + Math.floor(Math.random() * 1000);
const server = spawn("python3", ["-m", "http.server", String(port), "--bind", "127.0.0.1", "-d", join(here, "dist")], {
  stdio: "ignore",
});
await new Promise((r) => setTimeout(r, 1000));
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless=new",
    "--no-sandbox",
    "--enable-unsafe-webgpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
  ],
});
let page;
try {
  page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  page.on("console", (m) => console.log(`[page] ${m.text()}`));
  page.on("pageerror", (e) => console.log(`[page error] ${e}`));
  await page.goto(`http://127.0.0.1:${port}/index.html`);
  await page.waitForFunction(() => document.body.dataset.ready, null, { timeout: 15 * 60 * 1000 });
  const ready = await page.evaluate(() => document.body.dataset.ready);
  const statusText = await page.textContent("#status");
  if (ready !== "1") fail(`the page did not finish: ${statusText}`);
  const adapter = await page.textContent("#adapter");
  console.log(`== page adapter: ${adapter}`);
  const results = await page.evaluate(() => window.pageResults);
  await page.screenshot({ path: join(root, "docs", "web-page.png"), fullPage: true });

  // 3. Compare.
  let compared = 0;
  for (const photo of PHOTOS) {
    const got = results.find((r) => r.photo === photo);
    if (!got) fail(`the page has no result for ${photo}`);
    for (const [pagePrec, nativePrec] of Object.entries(PAIRS)) {
      const p = got.results.find((r) => r.precision === pagePrec);
      const n = native.find((r) => r.image === photo && r.precision === nativePrec);
      if (!p || !n) fail(`${photo} ${pagePrec}: missing (page ${!!p}, native ${!!n})`);
      const [pt, nt] = [p.top5[0], n.top5[0]];
      console.log(
        `${photo} ${pagePrec}: page top-1 ${pt.index} ${pt.label.split(",")[0]} ${(100 * pt.p).toFixed(2)}% ` +
          `(${p.ms.toFixed(1)} ms), native ${nt.index} ${(100 * nt.p).toFixed(2)}% (${n.ms.toFixed(1)} ms)`,
      );
      if (pt.index !== nt.index) fail(`${photo} ${pagePrec}: page top-1 ${pt.index}, native ${nt.index}`);
      compared++;
    }
  }
  const bench = await page.evaluate(() => window.pageBench);
  if (!bench || bench.length === 0) fail("the page ran no benchmark case");
  for (const r of bench) {
    console.log(`bench ${r.case} ${r.precision}: ${r.kernel}, verified ${r.verified}, ${r.ms} ms`);
    if (!r.verified || r.ms === null) fail(`bench ${r.case} ${r.precision}: not verified or not timed`);
  }
  console.log(`ok: ${compared} top-1 results equal the native run's; screenshot docs/web-page.png`);
} finally {
  await browser.close();
  server.kill();
}
