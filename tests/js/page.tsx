// The seed's app/page.tsx (../shared/seed-stream-text-with-chat-prompt.md), adapted only to the current
// useChat API: the transport names the endpoint (this app's /api/chat, from NEXT_PUBLIC_CHAT_API as
// Next.js inlines it), sendMessage replaces append, the input is the page's own state, a message shows
// its text parts, and a Stop button calls stop().
'use client';

import { useChat } from '@ai-sdk/react';
import { DefaultChatTransport } from 'ai';
import { useState } from 'react';

const transport = new DefaultChatTransport({ api: process.env.NEXT_PUBLIC_CHAT_API, credentials: 'include' });

export default function Page() {
  const [input, setInput] = useState('');
  const { messages, sendMessage, stop, status, error } = useChat({ transport });

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
      <button onClick={() => stop()} disabled={status !== 'streaming' && status !== 'submitted'}>
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
