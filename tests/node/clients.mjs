// The official openai Node SDK against the running tool: one scenario per run, its result as JSON on stdout.
//   node tests/node/clients.mjs <api base URL> <scenario> <model>
import OpenAI from 'openai';

const [base, scenario, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 60000 });
const weather = {
  type: 'function',
  function: {
    name: 'get_weather', description: 'The weather in a city.',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};

async function toolLoop() {
  const messages = [{ role: 'user', content: 'What is the weather in Paris?' }];
  const first = await client.chat.completions.create({ model, messages, tools: [weather] });
  const call = first.choices[0].message.tool_calls[0];
  messages.push(first.choices[0].message);
  messages.push({ role: 'tool', tool_call_id: call.id, content: '18 C and sunny' });
  const second = await client.chat.completions.create({ model, messages, tools: [weather] });
  return { finish: first.choices[0].finish_reason, name: call.function.name,
           arguments: JSON.parse(call.function.arguments), answer: second.choices[0].message.content };
}

async function streamedTools() {
  const stream = client.chat.completions.stream({
    model, messages: [{ role: 'user', content: 'Weather in Rome, please' }], tools: [weather],
    tool_choice: { type: 'function', function: { name: 'get_weather' } },
  });
  const final = await stream.finalChatCompletion();
  const call = final.choices[0].message.tool_calls[0];
  return { finish: final.choices[0].finish_reason, name: call.function.name,
           arguments: JSON.parse(call.function.arguments) };
}

async function models() {
  const one = await client.models.retrieve(model);
  let missing = null;
  try { await client.models.retrieve('no-such-model'); } catch (e) { missing = { status: e.status, code: e.code }; }
  const list = [];
  for await (const m of client.models.list()) list.push(m.id);
  return { id: one.id, missing, first: list[0] };
}

async function limits() {
  const cut = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Tell me a long story about a lighthouse keeper' }], max_tokens: 4 });
  const stopped = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Say alpha beta gamma delta' }], stop: ['gamma'] });
  return { cut: cut.choices[0].message.content, cutFinish: cut.choices[0].finish_reason,
           stopped: stopped.choices[0].message.content, stoppedFinish: stopped.choices[0].finish_reason };
}

const scenarios = { toolLoop, streamedTools, models, limits };
try {
  console.log(JSON.stringify(await scenarios[scenario]()));
} catch (e) {
  console.log(JSON.stringify({ error: String(e && e.message || e), status: e && e.status }));
  process.exitCode = 1;
}
