// Checks KEDA ScaledObjects against KEDA's own CRD schema, as shipped in the npm package
// @kubernetes-models/keda (types, required fields, enums). Reads a JSON array of objects on stdin;
// the directory holding node_modules is the first argument. Used by infra/validate.
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = join(process.argv[2], "node_modules", "@kubernetes-models", "keda", "keda.sh", "v1alpha1");
const { ScaledObject } = await import(pathToFileURL(join(modules, "ScaledObject.js")).href);

let input = "";
for await (const chunk of process.stdin) input += chunk;
let failed = 0;
for (const object of JSON.parse(input)) {
  const name = `${object.kind}/${object.metadata?.name}`;
  if (object.kind !== "ScaledObject") {
    console.log(`ERROR ${name}: not a ScaledObject`);
    failed++;
    continue;
  }
  try {
    new ScaledObject(object).validate();
    console.log(`ok ${name}`);
  } catch (error) {
    console.log(`ERROR ${name}: ${error.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
