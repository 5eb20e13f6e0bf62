// Validates AsyncAPI documents with the official parser (@asyncapi/parser).
// Usage: node validate.mjs FILE...   Prints every diagnostic; exits 1 when any document
// has an error-severity diagnostic (severity 0) or does not parse, 0 otherwise.
import { readFile } from "node:fs/promises";
import { Parser, DiagnosticSeverity } from "@asyncapi/parser";

const parser = new Parser();
const names = ["error", "warning", "information", "hint"];
let failed = false;
for (const file of process.argv.slice(2)) {
  const text = await readFile(file, "utf8");
  const { document, diagnostics } = await parser.parse(text, { source: file });
  const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
  for (const d of diagnostics) {
    const where = d.path && d.path.length ? d.path.join("/") : "(document)";
    console.log(`${file}: ${names[d.severity] ?? d.severity} ${d.code} at ${where}: ${d.message}`);
  }
  if (!document || errors.length) {
    failed = true;
    console.log(`${file}: INVALID (${errors.length} errors)`);
  } else {
    console.log(`${file}: valid AsyncAPI ${document.version()}`);
  }
}
process.exit(failed ? 1 : 0);
