// The AI SDK's DefaultChatTransport (or TextStreamChatTransport) against the app's /api/chat, as useChat drives it.
//   node chat_client.mjs REQUEST_JSON
// REQUEST_JSON: {"api", "messages", "chatId"?, "body"?, "protocol"?: "text", "headers"?,
//   "abortAfter"?: text deltas, then the request is aborted (a reload does that),
//   "stopAfter"?: text deltas, then the chat's stop endpoint is called and the stream read to its end,
//   "resume"?: true: reconnect to the chat's stream (GET {api}/{chatId}/stream), as useChat({resume: true}) does}
// When the last message is the assistant's (answers to its tool approvals), the reply continues it, as Chat does.
// Prints one JSON line: the chunks received, the assistant message they build (null if there was no stream to
// resume), and the error, if any.
import { DefaultChatTransport, TextStreamChatTransport, readUIMessageStream } from 'ai';

const request = JSON.parse(process.argv[2]);
const Transport = request.protocol === 'text' ? TextStreamChatTransport : DefaultChatTransport;
const transport = new Transport({ api: request.api, headers: request.headers, body: request.body });
const abort = new AbortController();
const chunks = [];
let error = null;
let message = null;
const chatId = request.chatId ?? 'chat-1';
let stopping = null;
try {
  const stream = request.resume
    ? await transport.reconnectToStream({ chatId, abortSignal: abort.signal })
    : await transport.sendMessages({
        chatId,
        messages: request.messages,
        trigger: 'submit-message',
        messageId: undefined,
        abortSignal: abort.signal,
      });
  if (stream === null) {
    process.stdout.write(JSON.stringify({ chunks, message, error }) + '\n');
    process.exit(0);
  }
  const [recorded, built] = stream.tee();
  const reading = (async () => {
    for await (const chunk of recorded) {
      chunks.push(chunk);
      const deltas = chunks.filter((c) => c.type === 'text-delta').length;
      if (request.abortAfter && deltas >= request.abortAfter) {
        abort.abort();
      }
      if (request.stopAfter && deltas >= request.stopAfter && stopping === null) {
        const url = `${request.api.split('?')[0]}/${encodeURIComponent(chatId)}/stop`;
        stopping = fetch(url, { method: 'POST', headers: request.headers }).then((r) => r.status);
      }
    }
  })();
  const last = request.messages.at(-1) ?? { role: 'user' };
  const continued = last.role === 'assistant' ? structuredClone(last) : undefined;
  for await (const state of readUIMessageStream({ message: continued, stream: built, onError: (e) => { error = e.message; } })) {
    message = state;
  }
  await reading;
} catch (e) {
  error = abort.signal.aborted ? 'aborted' : e.message;
}
const stopped = stopping === null ? null : await stopping;
process.stdout.write(JSON.stringify({ chunks, message, error, stopped }) + '\n');
