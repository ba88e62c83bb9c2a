// The Node `openai` package's responses.create({stream: true}) against the gateway.
// Usage: node responses_stream.mjs <base url> <model> [abort-after-n-events]
// SIM (environment): the simulator's options as JSON (its key, its pace).
// Prints one JSON line: the event types, the text, and the final status.
import OpenAI from "openai";

const [baseURL, model, abortAfter] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "sk-node", maxRetries: 0 });
const controller = new AbortController();
const stream = await client.responses.create(
  { model, input: "Tell me about streams", stream: true, sim: JSON.parse(process.env.SIM ?? "{}") },
  { signal: controller.signal },
);
const types = [];
let text = "";
let status = null;
try {
  for await (const event of stream) {
    types.push(event.type);
    if (event.type === "response.output_text.delta") text += event.delta;
    if (event.type === "response.completed") status = event.response.status;
    if (abortAfter && types.length >= Number(abortAfter)) controller.abort();
  }
} catch (error) {
  if (!(error instanceof OpenAI.APIUserAbortError)) throw error;
  status = "aborted";
}
// The SDK ends the iteration quietly when its own signal aborts it.
if (controller.signal.aborted) status = "aborted";
console.log(JSON.stringify({ types, text, status }));
