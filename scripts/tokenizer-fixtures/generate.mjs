// Generates the tokenizer parity fixture: token ids from Hugging Face's Rust tokenizer (the npm
// package 'tokenizers'), configured as transformers' BertTokenizerFast is for bert-base-uncased
// (BertNormalizer lowercase + accent stripping, BertPreTokenizer, WordPiece with [UNK] and
// 100 chars per word, [CLS] A [SEP] B [SEP] template, the five special tokens matched in raw text,
// longest-first truncation). The texts are written here (no data set is copied); only the ids
// depend on the vocabulary, which is read at generation time.
//
//   cd scripts/tokenizer-fixtures && npm install && node generate.mjs [--vocab PATH] [--out PATH]
//
// Default vocab: shared/data/vocab/bert-base-uncased/vocab.txt in a folder above this one.
// Default output: tests/SpeedLimit.Tests/Data/Fixtures/hf-tokenizer.json.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync, renameSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { Tokenizer } from 'tokenizers';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..');
const args = process.argv.slice(2);
const arg = (name) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : undefined; };

function findVocab() {
  for (let dir = here; ; dir = dirname(dir)) {
    const candidate = join(dir, 'shared', 'data', 'vocab', 'bert-base-uncased', 'vocab.txt');
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) return undefined;
  }
}

const vocabPath = arg('--vocab') ?? findVocab();
if (!vocabPath || !existsSync(vocabPath)) {
  console.error('error: no bert-base-uncased vocab.txt found; pass --vocab PATH');
  process.exit(2);
}
const outPath = arg('--out') ?? join(repo, 'tests', 'SpeedLimit.Tests', 'Data', 'Fixtures', 'hf-tokenizer.json');
const vocabBytes = readFileSync(vocabPath);
const vocabLines = vocabBytes.toString('utf8').split(/\r?\n/);
if (vocabLines[vocabLines.length - 1] === '') vocabLines.pop();
const vocab = Object.fromEntries(vocabLines.map((t, i) => [t, i]));
const id = (t) => { if (!(t in vocab)) throw new Error(`vocab lacks ${t}`); return vocab[t]; };

// The tokenizer.json that transformers' BertConverter writes for an uncased BERT vocabulary.
const special = (content) => ({ id: id(content), content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
const tokenizerJson = {
  version: '1.0',
  truncation: null,
  padding: null,
  added_tokens: ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'].map(special),
  normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
  pre_tokenizer: { type: 'BertPreTokenizer' },
  post_processor: {
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } }],
    pair: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } },
      { Sequence: { id: 'B', type_id: 1 } }, { SpecialToken: { id: '[SEP]', type_id: 1 } }],
    special_tokens: {
      '[CLS]': { id: '[CLS]', ids: [id('[CLS]')], tokens: ['[CLS]'] },
      '[SEP]': { id: '[SEP]', ids: [id('[SEP]')], tokens: ['[SEP]'] },
    },
  },
  decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
  model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
};
const tokenizer = Tokenizer.fromString(JSON.stringify(tokenizerJson));

// Texts in the style of GLUE tasks (sentiment, paraphrase, entailment, acceptability), written for this fixture.
const sentences = [
  'a gorgeous , witty , seductive movie .',
  'the plot is nothing but boilerplate clichés from start to finish .',
  "it 's a charming and often affecting journey .",
  'unflinchingly bleak and desperate',
  'the acting , costumes , music , cinematography and sound are all astounding given the production \'s austere locales .',
  'Is this the worst film of the year? Probably not, but it is close.',
  'An utterly incompetent conclusion to a trilogy that began with real promise and then squandered it on noise.',
  'The company said its third-quarter net income rose 12 percent to $1.8 billion, beating analysts\' forecasts.',
  'Shares of the chipmaker fell 4.5% in early trading on Tuesday after the quarterly report disappointed investors.',
  'The senator, who has served since 1998, announced on Friday that she would not seek re-election next year.',
  'Officials confirmed that the bridge, closed since the storm in March, will reopen to traffic by the end of June.',
  'Police arrested two men in connection with the robbery of a jewelry store in downtown Chicago late Sunday night.',
  'The vaccine was 94.1 percent effective in preventing illness in a trial of more than 30,000 volunteers, the company said in a statement released on Monday morning.',
  'Researchers at the university reported that the new battery design retained 90% of its capacity after 5,000 charge cycles, roughly double the figure for conventional cells.',
  'The museum\'s director resigned after an internal review found that several paintings in the collection had been acquired without proper documentation of their provenance during the 1960s and 1970s.',
  'A man is playing a guitar on a stage.',
  'A woman is slicing an onion in the kitchen.',
  'Two dogs are running through a field of tall grass.',
  'The cat sat on the mat.',
  'The book was read by the student.',
  'Him and me went to the store yesterday.',
  'The more you eat, the fatter you get.',
  'John seems to be likely to win the race.',
  'Which book did you say that Mary bought?',
  'Naïve café owners in Zürich serve crème brûlée with résumé-worthy flair.',
  'ÉCOLE NORMALE SUPÉRIEURE and the Ångström unit.',
  'x^2 + y = z | a ~ b `code` and 50% off @ home #1 <tag> {brace} [bracket] \\backslash',
  'Prices rose from €2 to £3, then ¥400 — a “remarkable” jump…',
  'Tokyo (東京) and Beijing (北京) are capitals; 서울 is too.',
  'Emoji 😀 and symbols ☃ ✓ in a sentence.',
  'Hyphenated well-known state-of-the-art multi-lingual pre-trained models.',
  'UPPERCASE WORDS AND MiXeD CaSe TeXt.',
  "Don't, won't, can't and shouldn't've.",
  'Numbers like 3.14159, 1,000,000 and 2023-10-05 appear here.',
  'If the Fed raises rates again, mortgage costs will climb further, economists said.',
  'The Federal Reserve is expected to raise interest rates again, which would push mortgage costs higher, according to economists.',
  'The hurricane made landfall near the coast of Florida on Wednesday, knocking out power to more than two million homes and businesses across the state.',
  'More than two million homes and businesses lost power when the hurricane came ashore in Florida on Wednesday.',
  'The novel won the prize.',
  'The novel did not win any prize, although critics praised it widely for its inventive structure and its portrait of a small fishing village.',
  'No.',
  'Yes!',
];

// Each string is one case of its own, chosen for where implementations tend to differ.
const specialTexts = [
  'İstanbul İzmir',
  'DİYARBAKIR and Kırıkkale',
  'line\u2028separator and paragraph\u2029separator',
  'first line\u2028second line',
  'nel\u0085char vt\u000bff\u000c end',
  'zero\u200bwidth\u200djoiner\ufeffbom',
  'soft\u00adhyphen',
  'non\u00a0breaking\u2003em\u3000ideographic',
  'tab\tnewline\ncarriage\rreturn',
  'replacement \ufffd char and nul \u0000 char',
  '[CLS] typed at the start',
  'typed at the end [SEP]',
  'a [MASK] in the middle',
  'two [SEP][SEP] adjacent',
  'glued[SEP]to words',
  '[PAD] and [UNK] typed',
  'lowercase [cls] [sep] [mask] are not special',
  'partial [CLS and SEP] and [ MASK ]',
  '[MASK]',
  'ß straße STRASSE',
  'ΣΊΣΥΦΟΣ Greek capitals',
  'ﬁ ligature and ｆｕｌｌｗｉｄｔｈ letters',
  'combining e\u0301 and a\u0308 marks',
  'a'.repeat(101) + ' long word',
  'a'.repeat(100) + ' exactly one hundred',
  'supercalifragilisticexpialidocious antidisestablishmentarianism',
  '',
  '   ',
  '...',
];

const cases = [];
async function add(a, b, maxLength) {
  tokenizer.setTruncation(maxLength);
  const enc = await tokenizer.encode(a, b ?? null);
  cases.push({ a, b: b ?? null, maxLength, ids: enc.getIds(), typeIds: enc.getTypeIds() });
}

for (const s of [...sentences, ...specialTexts]) await add(s, null, 128);
for (const s of sentences.slice(0, 16)) await add(s, null, 12);
// Pairs: every long/short combination at the default max length 64 and at shorter ones, so
// truncation hits a longer first, a longer second, equal lengths, odd and even budgets.
const pairSentences = sentences.slice(4, 16).concat(sentences.slice(34, 40));
for (let i = 0; i < pairSentences.length; i++)
  for (let j = 0; j < pairSentences.length; j++) {
    if (i === j) continue;
    const k = i * pairSentences.length + j;
    await add(pairSentences[i], pairSentences[j], [64, 64, 32, 24, 17, 16][k % 6]);
  }
for (let i = 0; i < specialTexts.length; i++) await add(specialTexts[i], specialTexts[(i + 7) % specialTexts.length], 32);
await add('equal length one two', 'equal length one two', 9);
await add('equal length one two', 'equal length one two', 10);
await add('short', 'a much longer second segment that must be cut', 8);
await add('a much longer first segment that must be cut', 'short', 8);
await add('one two three four five six seven', 'one two three four five six seven', 3);

const require = createRequire(import.meta.url);
const fixture = {
  description: "Token ids of Hugging Face's Rust tokenizer (npm 'tokenizers') configured as BertTokenizerFast for bert-base-uncased. Regenerate with scripts/tokenizer-fixtures/generate.mjs.",
  tokenizers: require('tokenizers/package.json').version,
  vocab: 'bert-base-uncased vocab.txt',
  // Hash of the lines joined by \n, so a CRLF copy of the same vocabulary matches.
  vocabSha256: createHash('sha256').update(vocabLines.join('\n'), 'utf8').digest('hex'),
  vocabSize: vocabLines.length,
  cases,
};
const text = JSON.stringify(fixture, null, 0).replace(/\},\{"a"/g, '},\n{"a"') + '\n';
writeFileSync(outPath + '.tmp', text, 'utf8');
renameSync(outPath + '.tmp', outPath);
console.log(`wrote ${cases.length} cases to ${outPath} (tokenizers ${fixture.tokenizers}, vocab ${vocabPath})`);
