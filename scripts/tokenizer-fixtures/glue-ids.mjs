// Writes Hugging Face's ids for GLUE TSVs as JSONL ({task, a, b, maxLength, ids, typeIds} per line), to
// compare with another implementation on real text. Reads the same tokenizer.json as generate.mjs builds,
// or a run folder's (--tokenizer RUN/tokenizer.json).
//   node glue-ids.mjs --glue path/to/glue --vocab path/to/vocab.txt --out ids.jsonl [--max 64] [--limit 10000]
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from 'tokenizers';

const args = process.argv.slice(2);
const arg = (n, d) => { const i = args.indexOf(n); return i >= 0 ? args[i + 1] : d; };
const glue = arg('--glue'), out = arg('--out'), maxLength = Number(arg('--max', '64')), limit = Number(arg('--limit', '10000'));
let tokenizer;
if (arg('--tokenizer')) tokenizer = Tokenizer.fromFile(arg('--tokenizer'));
else {
  const lines = readFileSync(arg('--vocab'), 'utf8').split(/\r?\n/); if (lines.at(-1) === '') lines.pop();
  const vocab = Object.fromEntries(lines.map((t, i) => [t, i]));
  const special = (content) => ({ id: vocab[content], content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  tokenizer = Tokenizer.fromString(JSON.stringify({
    version: '1.0', truncation: null, padding: null, added_tokens: ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'].map(special),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: { type: 'BertProcessing', sep: ['[SEP]', vocab['[SEP]']], cls: ['[CLS]', vocab['[CLS]']] },
    decoder: null, model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
  }));
}
tokenizer.setTruncation(maxLength);
// GLUE TSVs: tab-split lines, no quote handling, a header line, a BOM on some files.
const tasks = [
  ['mrpc', 'MRPC/train.tsv', 3, 4], ['mrpc', 'MRPC/dev.tsv', 3, 4], ['rte', 'RTE/train.tsv', 1, 2], ['rte', 'RTE/dev.tsv', 1, 2],
  ['qnli', 'QNLI/dev.tsv', 1, 2], ['sst2', 'SST-2/dev.tsv', 0, -1], ['sst2', 'SST-2/train.tsv', 0, -1],
];
const rows = [];
for (const [task, file, ca, cb] of tasks) {
  let lines;
  try { lines = readFileSync(join(glue, file), 'utf8').replace(/^\uFEFF/, '').split(/\r?\n/).slice(1).filter((l) => l.length > 0); } catch { continue; }
  for (const line of lines.slice(0, limit)) {
    const f = line.split('\t');
    const a = f[ca], b = cb >= 0 ? f[cb] : null;
    if (a === undefined || (cb >= 0 && b === undefined)) continue;
    const e = await tokenizer.encode(a, b);
    rows.push(JSON.stringify({ task, a, b, maxLength, ids: e.getIds(), typeIds: e.getTypeIds() }));
  }
}
writeFileSync(out, rows.join('\n') + '\n');
console.log(`wrote ${rows.length} encodings (max length ${maxLength}) to ${out}`);
