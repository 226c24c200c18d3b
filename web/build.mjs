// Bundles src/main.ts (and the CSS it imports, uPlot's included) into
// ../crates/ckpt/assets/app.js and app.css. esbuild's output depends only on its inputs and
// these options (no timestamps, no absolute paths): the same sources give the same bytes.
import * as esbuild from "esbuild";
import { copyFileSync } from "node:fs";

const out = new URL("../crates/ckpt/assets/", import.meta.url).pathname;
await esbuild.build({
  entryPoints: { app: "src/main.ts" },
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020"],
  outdir: out,
  legalComments: "eof",
  sourcemap: false,
  charset: "utf8",
  logLevel: "warning",
});
copyFileSync(new URL("src/index.html", import.meta.url), out + "index.html");
