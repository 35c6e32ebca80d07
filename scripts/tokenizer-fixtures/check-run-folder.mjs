// Checks a run folder's tokenizer.json with Hugging Face's Rust tokenizer: loads it with the npm
// package 'tokenizers' and encodes every case of the parity fixture (a BERT-vocabulary run only).
//   node check-run-folder.mjs RUN_FOLDER [FIXTURE]
import { Tokenizer } from 'tokenizers';
import { readFileSync } from 'node:fs';
const fixture = JSON.parse(readFileSync(process.argv[3] ?? new URL('../../tests/SpeedLimit.Tests/Data/Fixtures/hf-tokenizer.json', import.meta.url), 'utf8'));
const tok = Tokenizer.fromFile(process.argv[2] + '/tokenizer.json');
let same = 0, diff = 0;
for (const c of fixture.cases) {
  tok.setTruncation(c.maxLength);
  const e = await tok.encode(c.a, c.b);
  if (JSON.stringify(e.getIds()) === JSON.stringify(c.ids) && JSON.stringify(e.getTypeIds()) === JSON.stringify(c.typeIds)) same++; else { diff++; if (diff < 4) console.log('differs', c.a, c.b); }
}
const t2 = Tokenizer.fromFile(process.argv[2] + '/tokenizer.json');
const c64 = fixture.cases.filter(c => c.maxLength === 64);
let same64 = 0; for (const c of c64) { const e = await t2.encode(c.a, c.b); if (JSON.stringify(e.getIds()) === JSON.stringify(c.ids)) same64++; }
console.log(`run-folder tokenizer.json: ${same}/${same + diff} fixture cases identical; with its own truncation ${same64}/${c64.length} of the max-length-64 cases`);
