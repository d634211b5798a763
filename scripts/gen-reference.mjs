#!/usr/bin/env node
// Writes docs/REFERENCE.md from the SDK's own types (`npm run docs:reference`): for every
// resource class sdk/index.ts and sdk/kubernetes.ts export, its inputs (the `…Args` interface
// its constructor takes: name, type, required or not, the doc comment) and its outputs (the
// `declare`d Output properties). The TypeScript compiler reads the sources, so the reference
// cannot say what the code does not; test/docs/reference.test.ts fails when the checked-in file
// differs from what this prints (`--check`).
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const ts = createRequire(join(root, "package.json"))("typescript");
const OUT = join(root, "docs", "REFERENCE.md");
const SOURCES = [
  { file: "sdk/index.ts", module: "@strata/sdk" },
  { file: "sdk/kubernetes.ts", module: "@strata/sdk/kubernetes" },
];

const program = ts.createProgram(
  SOURCES.map((s) => join(root, s.file)),
  { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.CommonJS, strict: true, esModuleInterop: true, skipLibCheck: true },
);
const checker = program.getTypeChecker();

const doc = (node) =>
  ts
    .getJSDocCommentsAndTags(node)
    .filter((d) => ts.isJSDoc(d))
    .map((d) => ts.getTextOfJSDocComment(d.comment) ?? "")
    .join(" ")
    .replace(/\s+/g, " ")
    .trim();
const cell = (text) => text.replace(/\|/g, "\\|").replace(/\n/g, " ");
const typeText = (node) => (node.type ? node.type.getText().replace(/\s+/g, " ") : "?");
// `pulumi.Input<T>` and `pulumi.Output<T>` say how a value flows, not what it is: show T.
const unwrap = (text) => text.replace(/^pulumi\.(Input|Output)<(.*)>$/, "$2");

function interfaceMembers(decl) {
  return decl.members.filter(ts.isPropertySignature).map((m) => ({
    name: m.name.getText(),
    type: unwrap(typeText(m)),
    required: !m.questionToken,
    doc: doc(m),
  }));
}

const sections = [];
for (const { file, module } of SOURCES) {
  const source = program.getSourceFile(join(root, file));
  const interfaces = new Map();
  ts.forEachChild(source, (n) => {
    if (ts.isInterfaceDeclaration(n)) interfaces.set(n.name.text, n);
  });
  ts.forEachChild(source, (n) => {
    if (!ts.isClassDeclaration(n) || !n.name || !n.modifiers?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword)) return;
    const heritage = n.heritageClauses?.[0]?.types[0]?.getText() ?? "";
    if (!/Resource$/.test(heritage)) return;
    const ctor = n.members.find(ts.isConstructorDeclaration);
    const argsType = ctor?.parameters[1]?.type?.getText();
    const args = argsType && interfaces.get(argsType);
    const outputs = n.members
      .filter((m) => ts.isPropertyDeclaration(m) && m.modifiers?.some((x) => x.kind === ts.SyntaxKind.DeclareKeyword))
      .map((m) => ({ name: m.name.getText(), type: unwrap(typeText(m)), doc: doc(m) }));
    const lines = [`## ${n.name.text}`, "", `\`import { ${n.name.text} } from "${module}"\` (${heritage.replace(/^pulumi\./, "")})`, ""];
    const about = doc(n);
    if (about) lines.push(about, "");
    if (args) {
      lines.push(`### Inputs (\`${argsType}\`)`, "", "| input | type | required | description |", "|---|---|---|---|");
      for (const m of interfaceMembers(args)) lines.push(`| \`${m.name}\` | \`${cell(m.type)}\` | ${m.required ? "yes" : "no"} | ${cell(m.doc)} |`);
      lines.push("");
    }
    if (outputs.length > 0) {
      const inputs = new Set(args ? interfaceMembers(args).map((m) => m.name) : []);
      lines.push("### Outputs", "", "| output | type | description |", "|---|---|---|");
      for (const o of outputs) lines.push(`| \`${o.name}\` | \`${cell(o.type)}\` | ${cell(o.doc || (inputs.has(o.name) ? "The input, as applied (defaults filled in)." : ""))} |`);
      lines.push("");
    }
    sections.push(lines.join("\n"));
  });
}

const text = [
  "# Strata resource reference",
  "",
  "Generated from the SDK's types by `npm run docs:reference` (scripts/gen-reference.mjs); do not edit by hand.",
  "Inputs are what a program passes (each may also be a Pulumi `Input`); outputs are what the resource",
  "reports after `pulumi up` (each is a Pulumi `Output`). The user guide is docs/GUIDE.md.",
  "",
  ...sections,
].join("\n");

if (process.argv.includes("--check")) {
  let current = "";
  try {
    current = readFileSync(OUT, "utf8");
  } catch {}
  if (current !== text) {
    console.error("docs/REFERENCE.md is out of date: run `npm run docs:reference`");
    process.exit(1);
  }
} else {
  writeFileSync(OUT, text);
  console.log(`wrote ${OUT} (${sections.length} resources)`);
}
