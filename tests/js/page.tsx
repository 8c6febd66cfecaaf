// The seed's app/page.tsx (../shared/seed-stream-text-with-chat-prompt.md), adapted only to the current
// useChat API: the transport names the endpoint (this app's /api/chat, from NEXT_PUBLIC_CHAT_API as
// Next.js inlines it), sendMessage replaces append, the input is the page's own state, a message shows
// its text parts, the chat keeps its id across reloads, shows what the server kept of it and resumes a
// reply that is streaming, and a Stop button ends the reply on the server (stop() alone only leaves it).
'use client';

import { useChat } from '@ai-sdk/react';
import { DefaultChatTransport, type UIMessage } from 'ai';
import { useEffect, useState } from 'react';

const api = process.env.NEXT_PUBLIC_CHAT_API;
const transport = new DefaultChatTransport({ api, credentials: 'include' });

export default function Page() {
  const [id] = useState(() => (typeof window === 'undefined' ? '' : (sessionStorage.chatId ??= crypto.randomUUID())));
  const [kept, setKept] = useState<UIMessage[] | null>(null);
  useEffect(() => {
    fetch(`${api}/${id}`, { credentials: 'include' })
      .then(response => (response.ok ? response.json() : { messages: [] }))
      .then(chat => setKept(chat.messages), () => setKept([]));
  }, [id]);

  return kept && <Chat id={id} kept={kept} />;
}

function Chat({ id, kept }: { id: string; kept: UIMessage[] }) {
  const [input, setInput] = useState('');
  const { messages, sendMessage, stop, status, error } = useChat({ id, messages: kept, transport, resume: true });

  return (
    <div>
      <input
        value={input}
        onChange={event => {
          setInput(event.target.value);
        }}
        onKeyDown={async event => {
          if (event.key === 'Enter') {
            sendMessage({ text: input });
            setInput('');
          }
        }}
      />
      <button
        onClick={() => {
          stop();
          fetch(`${api}/${id}/stop`, { method: 'POST', credentials: 'include' });
        }}
        disabled={status !== 'streaming' && status !== 'submitted'}
      >
        Stop
      </button>

      {messages.map((message, index) => (
        <div key={index} className={message.role}>
          {message.parts.map(part => (part.type === 'text' ? part.text : '')).join('')}
        </div>
      ))}
      {error && <p className="error">{error.message}</p>}
    </div>
  );
}
