// node render.cjs SNAPSHOTS.json OUT_DIR [APP_DIR]: renders every dashboard of the app to OUT_DIR/<view>.png with
// Splunk's own Dashboard Studio components (render-entry.jsx, bundled by esbuild) in headless Chromium.
// Each ds.search becomes a ds.test data source holding its snapshot result (snapshots.py), so no Splunk is needed.
"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");
const esbuild = require("esbuild");
const { chromium } = require("playwright-core");
const { views } = require("./studio.cjs");

const [snapshotsFile, outDir, appArg] = process.argv.slice(2);
const appDir = path.resolve(appArg || path.join(__dirname, "..", "hubbridge"));
const snapshots = JSON.parse(fs.readFileSync(snapshotsFile, "utf8"));
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

function withSnapshots(view) {
  const def = JSON.parse(JSON.stringify(view.definition));
  const data = snapshots[view.name] || {};
  for (const [id, ds] of Object.entries(def.dataSources)) {
    if (ds.type !== "ds.search") continue;
    if (!data[id]) throw new Error(`${view.name}: no snapshot for data source ${id}`);
    def.dataSources[id] = { type: "ds.test", name: ds.name, options: { data: data[id] } };
  }
  delete def.defaults;
  // The time range picker asks splunkweb for its presets; with no Splunk behind the page it can only show an
  // error, so the renders leave it out (the sample's day is the range they show).
  for (const [id, input] of Object.entries(def.inputs || {})) {
    if (input.type === "input.timerange") {
      delete def.inputs[id];
      def.layout.globalInputs = (def.layout.globalInputs || []).filter((g) => g !== id);
    }
  }
  return def;
}

async function main() {
  const build = fs.mkdtempSync(path.join(os.tmpdir(), "hubbridge-render-"));
  await esbuild.build({
    entryPoints: [path.join(__dirname, "render-entry.jsx")],
    bundle: true,
    outfile: path.join(build, "bundle.js"),
    format: "iife",
    minify: true,
    legalComments: "none",
    logLevel: "error",
    define: { "process.env.NODE_ENV": '"production"', global: "window" },
    loader: { ".js": "jsx", ".css": "css", ".svg": "dataurl", ".png": "dataurl", ".woff": "dataurl", ".woff2": "dataurl" },
  });
  fs.mkdirSync(outDir, { recursive: true });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "hubbridge-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1440, height: 900 },
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync",
    ],
  });
  // Nothing leaves the machine: the page and its bundle are files.
  await context.route(/^(?!file:)/, (route) => route.abort());
  try {
    for (const view of views(appDir)) {
      const def = withSnapshots(view);
      const height = Object.values(def.layout.layoutDefinitions)[0].options.height + 160;
      const html = path.join(build, `${view.name}.html`);
      fs.writeFileSync(
        html,
        `<!doctype html><html><head><meta charset="utf-8"><link rel="stylesheet" href="bundle.css">` +
          `<style>html,body{margin:0;background:#f2f4f5}#root{width:1440px;height:${height}px}</style></head>` +
          `<body><div id="root"></div><script>window.HUBBRIDGE_DEFINITION=${JSON.stringify(def)}</script>` +
          `<script src="bundle.js"></script></body></html>`
      );
      const page = await context.newPage();
      const errors = [];
      page.on("pageerror", (e) => errors.push(String(e)));
      await page.setViewportSize({ width: 1440, height });
      await page.goto("file://" + html);
      const count = Object.keys(def.visualizations).length;
      // Rendered when every visualization has drawn something (a canvas, an svg or a table) and none is loading.
      await page.waitForFunction(
        (n) => {
          const vizs = document.querySelectorAll('[data-test="viz-react"], [data-test-viz-type]');
          const drawn = [...document.querySelectorAll("[data-id]")].filter((el) =>
            el.querySelector("canvas, svg, table, [data-test='single-value']")
          );
          return drawn.length >= n || vizs.length >= n;
        },
        count,
        { timeout: 60000 }
      ).catch(() => errors.push(`not every visualization rendered within 60 s`));
      await page.screenshot({ path: path.join(outDir, `${view.name}.png`), fullPage: true });
      console.log(`${view.name}: ${path.join(outDir, view.name + ".png")}${errors.length ? " (" + errors.join("; ") + ")" : ""}`);
      await page.close();
    }
  } finally {
    await context.close();
  }
}

main().catch((e) => {
  console.error(String(e && e.stack ? e.stack : e));
  process.exit(1);
});
