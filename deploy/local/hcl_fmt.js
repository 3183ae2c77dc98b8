// Checks that every Terraform file given is formatted as `terraform fmt` formats it: HashiCorp's
// own formatter (hclwrite.Format, which `terraform fmt` runs) compiled to WebAssembly, from the npm
// package @cdktf/hcl-tools. `--write` rewrites the files instead.
// Usage: node hcl_fmt.js [--write] FILE.tf...
const fs = require("fs");
const { format } = require("@cdktf/hcl-tools");

(async () => {
  const args = process.argv.slice(2);
  const write = args[0] === "--write";
  const files = write ? args.slice(1) : args;
  let bad = 0;
  for (const file of files) {
    const text = fs.readFileSync(file, "utf8");
    const formatted = await format(text);
    if (formatted === text) continue;
    if (write) {
      fs.writeFileSync(file, formatted);
      console.log(`formatted ${file}`);
      continue;
    }
    bad++;
    const a = text.split("\n"), b = formatted.split("\n");
    const line = a.findIndex((l, i) => l !== b[i]);
    console.log(`${file}:${line + 1}: not formatted as terraform fmt would:\n  is:        ${JSON.stringify(a[line])}\n  should be: ${JSON.stringify(b[line])}`);
  }
  if (bad) {
    console.log(`${bad} file(s) not formatted; node deploy/local/hcl_fmt.js --write <files> fixes them`);
    process.exit(1);
  }
  console.log(`${files.length} Terraform file(s) formatted canonically`);
})().catch((e) => { console.error(e); process.exit(2); });
