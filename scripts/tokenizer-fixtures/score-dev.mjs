// Scores a run folder's model on a GLUE dev TSV with clients no one here wrote (onnxruntime-node and
// Hugging Face's tokenizers), the way the run folder's README calls it: tokenizer.json from the folder,
// each example alone. Prints the accuracy beside the ONNX Runtime metric in deployment.json.
// Classification tasks scored by accuracy only (e.g. SST-2: --a 0 --label 1; RTE: --a 1 --b 2 --label 3).
//   npm install onnxruntime-node   # beside tokenizers, not committed
//   node score-dev.mjs RUN_FOLDER path/to/dev.tsv --a 0 [--b 1] --label 1
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { Tokenizer } from 'tokenizers';
const require = createRequire(import.meta.url);
const ort = require('onnxruntime-node');

const [run, tsv, ...rest] = process.argv.slice(2);
const arg = (n) => { const i = rest.indexOf(n); return i >= 0 ? Number(rest[i + 1]) : undefined; };
const ca = arg('--a') ?? 0, cb = arg('--b'), cl = arg('--label') ?? 1;
const deployment = JSON.parse(readFileSync(join(run, 'deployment.json'), 'utf8'));
const labels = deployment.contract.labels;
const tok = Tokenizer.fromFile(join(run, 'tokenizer.json'));
const lines = readFileSync(tsv, 'utf8').replace(/^\uFEFF/, '').split(/\r?\n/).slice(1).filter((l) => l.length > 0);
for (const w of deployment.winners) {
  const session = await ort.InferenceSession.create(join(run, w.onnxFile), { intraOpNumThreads: 1 });
  const tensor = (a) => new ort.Tensor('int64', BigInt64Array.from(a, BigInt), [1, a.length]);
  let correct = 0;
  for (const line of lines) {
    const f = line.split('\t');
    const enc = await tok.encode(f[ca], cb === undefined ? null : f[cb]);
    const { logits } = await session.run({ input_ids: tensor(enc.getIds()), attention_mask: tensor(enc.getAttentionMask()), token_type_ids: tensor(enc.getTypeIds()) });
    const row = Array.from(logits.data);
    const gold = /^\d+$/.test(f[cl]) ? Number(f[cl]) : labels.indexOf(f[cl]);
    if (row.indexOf(Math.max(...row)) === gold) correct++;
  }
  console.log(`${w.onnxFile}: accuracy ${(correct / lines.length).toFixed(4)} on ${lines.length} examples (onnxruntime-node ${require('onnxruntime-node/package.json').version}, tokenizers); deployment.json says ${w.onnxRuntime.metric.toFixed(4)} (${w.onnxRuntime.runtime})`);
}
