// Builds the agenda app into one self-contained HTML file (its script and styles inline, the ext-apps SDK bundled
// in), the file the server ships: mcp_todo/server/ui/agenda.html. `--out DIR` writes it to DIR instead, beside the
// test host (host.html), which is never shipped: the browser test builds both and compares the app with the
// committed file.
import { build } from "esbuild";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const SHIPPED = resolve(here, "../../mcp_todo/server/ui/agenda.html");

// zod (the SDK's schemas) re-exports its error messages in fifty languages through one namespace, which a bundler
// cannot prune: over a third of the page. The SDK shows none of them; English, zod's default, is the one kept.
const englishOnly = {
  name: "zod-english-only",
  setup(builder) {
    builder.onResolve({ filter: /\/locales\/index\.js$/ }, (args) =>
      args.importer.includes(`${"node_modules"}/zod/`) ? { path: "zod-locales", namespace: "zod-locales", pluginData: dirname(args.importer) } : undefined,
    );
    builder.onLoad({ filter: /.*/, namespace: "zod-locales" }, (args) => ({
      contents: `export { default as en } from "../locales/en.js";`,
      resolveDir: args.pluginData,
      loader: "js",
    }));
  },
};

async function bundle(entry) {
  const result = await build({
    entryPoints: [join(here, entry)],
    bundle: true,
    format: "iife",
    platform: "browser",
    target: "es2022",
    minify: true,
    legalComments: "none",
    write: false,
    logLevel: "warning",
    plugins: [englishOnly],
  });
  // Inline in a <script>: a "</script" inside a string would end the element.
  return result.outputFiles[0].text.replaceAll("</script", "<\\/script");
}

async function page(template, styles, entry) {
  const html = await readFile(join(here, template), "utf8");
  const css = styles ? await readFile(join(here, styles), "utf8") : "";
  const js = await bundle(entry);
  return html.replace("/*STYLE*/", () => css.trim()).replace("/*SCRIPT*/", () => js.trim());
}

const outAt = process.argv.indexOf("--out");
const outDir = outAt > 0 ? resolve(process.argv[outAt + 1]) : null;
const agenda = await page("src/agenda.html", "src/agenda.css", "src/agenda.js");
const host = await page("host/host.html", null, "host/host.js");
const agendaPath = outDir ? join(outDir, "agenda.html") : SHIPPED;
const hostPath = join(outDir ?? join(here, "dist"), "host.html");
for (const [path, text] of [[agendaPath, agenda], [hostPath, host]]) {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, text);
  console.log(`${path}: ${Buffer.byteLength(text)} bytes`);
}
