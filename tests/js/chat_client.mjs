// The AI SDK's DefaultChatTransport (or TextStreamChatTransport) against the app's /api/chat, as useChat drives it.
//   node chat_client.mjs REQUEST_JSON
// REQUEST_JSON: {"api", "messages", "body"?, "protocol"?: "text", "abortAfter"?: chunks, "headers"?}
// When the last message is the assistant's (answers to its tool approvals), the reply continues it, as Chat does.
// Prints one JSON line: the chunks received, the assistant message they build, and the error, if any.
import { DefaultChatTransport, TextStreamChatTransport, readUIMessageStream } from 'ai';

const request = JSON.parse(process.argv[2]);
const Transport = request.protocol === 'text' ? TextStreamChatTransport : DefaultChatTransport;
const transport = new Transport({ api: request.api, headers: request.headers, body: request.body });
const abort = new AbortController();
const chunks = [];
let error = null;
let message = null;
try {
  const stream = await transport.sendMessages({
    chatId: request.chatId ?? 'chat-1',
    messages: request.messages,
    trigger: 'submit-message',
    messageId: undefined,
    abortSignal: abort.signal,
  });
  const [recorded, built] = stream.tee();
  const reading = (async () => {
    for await (const chunk of recorded) {
      chunks.push(chunk);
      if (request.abortAfter && chunks.filter((c) => c.type === 'text-delta').length >= request.abortAfter) {
        abort.abort();
      }
    }
  })();
  const last = request.messages.at(-1);
  const continued = last.role === 'assistant' ? structuredClone(last) : undefined;
  for await (const state of readUIMessageStream({ message: continued, stream: built, onError: (e) => { error = e.message; } })) {
    message = state;
  }
  await reading;
} catch (e) {
  error = abort.signal.aborted ? 'aborted' : e.message;
}
process.stdout.write(JSON.stringify({ chunks, message, error }) + '\n');
