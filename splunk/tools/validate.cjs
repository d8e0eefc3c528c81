// node validate.cjs [APP_DIR...]: validates every Dashboard Studio view of the app against the schema Splunk's own
// packages build (@splunk/dashboard-definition's createSchemaBasedOnPresets over the Enterprise and Cloud
// view-only presets of @splunk/dashboard-presets), and checks that every reference inside a definition resolves.
// Prints one JSON object { APP_DIR: {view name: [problems]} } and exits 1 when any view has a problem. Several
// app directories share one load of the schemas (compiling them takes most of the run).
"use strict";

const path = require("path");
const { schemas, views } = require("./studio.cjs");

const appDirs = process.argv.length > 2 ? process.argv.slice(2) : [path.join(__dirname, "..", "hubbridge")];
const Ajv = require("ajv");

const validators = {};
for (const [flavour, schema] of Object.entries(schemas())) {
  // strict: false because Splunk's schemas carry their own keywords (nullable, deprecated...) as Splunk uses them.
  validators[flavour] = new Ajv({ allErrors: true, strict: false }).compile(schema);
}

function references(def) {
  const problems = [];
  const ds = def.dataSources || {};
  const viz = def.visualizations || {};
  const inputs = def.inputs || {};
  for (const [id, v] of Object.entries(viz)) {
    for (const [role, ref] of Object.entries(v.dataSources || {})) {
      if (!(ref in ds)) problems.push(`visualization ${id}: ${role} data source ${ref} does not exist`);
    }
  }
  for (const [id, d] of Object.entries(ds)) {
    if (d.type === "ds.chain" && !(d.extend in ds)) problems.push(`data source ${id} extends missing ${d.extend}`);
    if (d.type === "ds.search" && !(d.options && d.options.query)) problems.push(`data source ${id} has no query`);
  }
  const placed = new Set();
  const layout = def.layout || {};
  for (const [lid, l] of Object.entries(layout.layoutDefinitions || {})) {
    for (const item of l.structure || []) {
      if (!(item.item in viz) && !(item.item in inputs)) problems.push(`layout ${lid}: item ${item.item} does not exist`);
      placed.add(item.item);
    }
  }
  for (const tab of (layout.tabs && layout.tabs.items) || []) {
    if (!(tab.layoutId in (layout.layoutDefinitions || {}))) problems.push(`tab ${tab.label}: layout ${tab.layoutId} missing`);
  }
  for (const id of layout.globalInputs || []) {
    if (!(id in inputs)) problems.push(`global input ${id} does not exist`);
    placed.add(id);
  }
  for (const id of [...Object.keys(viz), ...Object.keys(inputs)]) {
    if (!placed.has(id)) problems.push(`${id} is defined but not placed in any layout`);
  }
  return problems;
}

const report = {};
let bad = false;
for (const view of appDirs.flatMap((dir) => views(path.resolve(dir)).map((v) => ({ dir, ...v })))) {
  const problems = [];
  for (const [flavour, validate] of Object.entries(validators)) {
    if (!validate(view.definition)) {
      for (const e of validate.errors) problems.push(`${flavour} schema: ${e.instancePath || "/"} ${e.message}`);
    }
  }
  problems.push(...references(view.definition));
  (report[view.dir] = report[view.dir] || {})[view.name] = problems;
  bad = bad || problems.length > 0;
}
process.stdout.write(JSON.stringify(report, null, 1) + "\n");
process.exit(bad ? 1 : 0);
