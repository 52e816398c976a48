// Token ids from Transformers.js's tokenizer, the reference vlatune's tokenizer.json reader is tested against.
// usage: node tools/tfjs/tokenize.mjs MODEL_DIR TEXTS.json OUT.json
//   TEXTS.json: a JSON array of strings; OUT.json: [{"ids": [...], "tokens": [...]}, ...], tokenizer(text) for each.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { AutoTokenizer, env } from '@huggingface/transformers';

const [dir, textsFile, outFile] = process.argv.slice(2);
if (!dir || !textsFile || !outFile) { console.error('usage: node tokenize.mjs MODEL_DIR TEXTS.json OUT.json'); process.exit(2); }
env.allowRemoteModels = false;
env.allowLocalModels = true;
env.localModelPath = '';
const tokenizer = await AutoTokenizer.from_pretrained(path.resolve(dir), { local_files_only: true });
const texts = JSON.parse(readFileSync(textsFile, 'utf8'));
const out = texts.map((text) => {
  const ids = tokenizer.encode(text);                       // add_special_tokens: true, as tokenizer(text)
  return { ids, tokens: ids.map((id) => tokenizer.model?.vocab?.[id] ?? tokenizer._tokenizer.id_to_token(id)) };
});
writeFileSync(outFile, JSON.stringify(out));
