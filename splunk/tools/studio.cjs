// Loading Splunk's Dashboard Studio packages in Node. They are written for a browser bundle: a DOM (jsdom gives
// one), CSS imports (ignored here) and the Ace editor on `window`. Nothing of Splunk's code is changed.
"use strict";

const fs = require("fs");
const path = require("path");

let loaded = null;

function installDom() {
  require.extensions[".css"] = () => {};
  const { JSDOM } = require("jsdom");
  const dom = new JSDOM("<!doctype html><html><body></body></html>", { url: "http://localhost/" });
  const win = dom.window;
  global.window = win;
  global.self = win;
  for (const key of Object.getOwnPropertyNames(win)) {
    if (key in global) continue;
    try {
      Object.defineProperty(global, key, { get: () => win[key], configurable: true });
    } catch (e) {
      // a few window properties cannot be mirrored; the packages do not need them
    }
  }
  // Node has its own Event classes; the packages dispatch events on jsdom's window, which wants jsdom's.
  for (const key of ["Event", "CustomEvent", "EventTarget", "MessageEvent", "KeyboardEvent", "MouseEvent", "navigator"]) {
    Object.defineProperty(global, key, { value: win[key], configurable: true, writable: true });
  }
  Object.defineProperty(global, "devicePixelRatio", { value: 1, configurable: true, writable: true });
  win.URL.createObjectURL = () => "blob:hubbridge";
  win.URL.revokeObjectURL = () => {};
  const media = () => ({ matches: false, addListener() {}, removeListener() {}, addEventListener() {}, removeEventListener() {} });
  win.matchMedia = media;
  Object.defineProperty(global, "matchMedia", { value: media, configurable: true, writable: true });
  // ace-builds registers itself on Node's global object; the search editor looks for it on window.
  Object.defineProperty(win, "ace", { get: () => globalThis.ace, configurable: true });
}

/** The official schemas: the one Splunk Enterprise's and the one Splunk Cloud's Dashboard Studio validate with. */
function schemas() {
  if (loaded) return loaded;
  installDom();
  const { createSchemaBasedOnPresets } = require("@splunk/dashboard-definition");
  loaded = {
    enterprise: createSchemaBasedOnPresets(require("@splunk/dashboard-presets/EnterpriseViewOnlyPreset").default),
    cloud: createSchemaBasedOnPresets(require("@splunk/dashboard-presets/CloudViewOnlyPreset").default),
  };
  return loaded;
}

/** Every Dashboard Studio view of the app: { name, file, definition }. */
function views(appDir) {
  const dir = path.join(appDir, "default", "data", "ui", "views");
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith(".xml"))
    .sort()
    .map((f) => {
      const xml = fs.readFileSync(path.join(dir, f), "utf8");
      const match = /<definition><!\[CDATA\[([\s\S]*?)\]\]><\/definition>/.exec(xml);
      if (!/<dashboard version="2"/.test(xml) || !match) {
        throw new Error(`${f}: not a Dashboard Studio view (<dashboard version="2"> with a <definition> CDATA)`);
      }
      return { name: f.replace(/\.xml$/, ""), file: f, definition: JSON.parse(match[1]) };
    });
}

module.exports = { installDom, schemas, views };
