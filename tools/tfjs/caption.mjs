// Captions images with Transformers.js from a folder written by `vlatune export`, loaded as it is:
// AutoProcessor (LlavaProcessor: the image processor, <image> expansion, the tokenizer) and
// LlavaForConditionalGeneration (onnx/vision_encoder, embed_tokens, decoder_model_merged), greedy decoding.
// usage: node tools/tfjs/caption.mjs EXPORT_DIR IMAGES.json OUT.json PROMPT MAX_NEW_TOKENS
//   IMAGES.json: a JSON array of image paths; OUT.json: {"prompt": text, "items": [{"image", "input_ids", "generated_ids", "caption"}]}
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { AutoProcessor, LlavaForConditionalGeneration, RawImage, env } from '@huggingface/transformers';

const [dir, imagesFile, outFile, prompt, maxNew] = process.argv.slice(2);
if (!dir || !imagesFile || !outFile || prompt === undefined || !maxNew) {
  console.error('usage: node caption.mjs EXPORT_DIR IMAGES.json OUT.json PROMPT MAX_NEW_TOKENS');
  process.exit(2);
}
env.allowRemoteModels = false;
const folder = path.resolve(dir);
const options = { local_files_only: true };
const processor = await AutoProcessor.from_pretrained(folder, options);
const model = await LlavaForConditionalGeneration.from_pretrained(folder, { ...options, dtype: 'fp32', device: 'cpu' });

// The checkpoint's own prompt, through its chat_template: one user turn with an image and the instruction.
const text = processor.apply_chat_template(
  [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: prompt }] }],
  { add_generation_prompt: true, tokenize: false });
const eos = model.generation_config.eos_token_id;
const items = [];
for (const file of JSON.parse(readFileSync(imagesFile, 'utf8'))) {
  const image = await RawImage.read(file);
  const inputs = await processor(image, text);
  const output = await model.generate({ ...inputs, max_new_tokens: Number(maxNew), do_sample: false });
  const inputIds = Array.from(inputs.input_ids.data, Number);
  let generated = Array.from(output.data, Number).slice(inputIds.length);
  const stop = generated.findIndex((t) => t === eos);
  if (stop >= 0) generated = generated.slice(0, stop);                 // vlatune reports tokens before EOS
  items.push({
    image: file, input_ids: inputIds, generated_ids: generated,
    caption: processor.batch_decode([generated], { skip_special_tokens: true })[0],
  });
}
writeFileSync(outFile, JSON.stringify({ prompt: text, items }));
