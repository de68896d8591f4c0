// The relay's built-in chat page: one WebSocket to /ws, in the same room as the TCP clients.
//
// Everything a message carries is shown with textContent, never parsed as HTML. For the
// browser test (tests/browser/chat_in_two_pages.py) the page keeps two globals:
//   window.chatLog          the entries shown, oldest first: {kind: 'in'|'me'|'notice',
//                           text: String (without the trailing newline), binary: Boolean}
//   window.chatSocketOpens  how many times a WebSocket opened
'use strict';

(() => {
  const MAX_ENTRIES = 1000;      // entries kept in the DOM (and in window.chatLog)
  const FIRST_DELAY = 500;       // ms before the first reconnection attempt
  const MAX_DELAY = 30000;       // ms, the longest back-off
  const STABLE_AFTER = 5000;     // ms a connection must stay open to reset the back-off
  const NEAR_BOTTOM = 40;        // px from the bottom that still count as "at the newest"

  // What the relay sends in line mode with --tag and --announce.
  const TAGGED = /^\[(\d+)\] /;
  const NOTICE = /^\* (\d+) (joined|left)$/;

  // Close codes worth a word when the server gives no reason.
  const CLOSE_TEXT = {
    1001: 'server going away',
    1006: 'connection lost',
    1008: 'policy violation',
    1009: 'message too big',
    1011: 'server error',
  };

  const stateEl = document.getElementById('state');
  const logEl = document.getElementById('log');
  const form = document.getElementById('composer');
  const input = document.getElementById('input');
  const sendButton = document.getElementById('send');
  const decoder = new TextDecoder('utf-8', { fatal: false });

  window.chatLog = [];
  window.chatSocketOpens = 0;

  let socket = null;
  let delay = FIRST_DELAY;
  let openedAt = 0;

  // A longer state text can wrap and make the header taller: keep the newest entry in view.
  function setState(state, text) {
    const follow = atBottom();
    stateEl.dataset.state = state;
    stateEl.textContent = text;
    sendButton.disabled = state !== 'open';
    if (follow) logEl.scrollTop = logEl.scrollHeight;
  }

  // Drops one trailing "\n" or "\r\n": the relay's lines end with one.
  function stripNewline(text) {
    if (text.endsWith('\r\n')) return text.slice(0, -2);
    if (text.endsWith('\n')) return text.slice(0, -1);
    return text;
  }

  function atBottom() {
    return logEl.scrollHeight - logEl.scrollTop - logEl.clientHeight < NEAR_BOTTOM;
  }

  function span(className, text) {
    const el = document.createElement('span');
    el.className = className;
    el.textContent = text;
    return el;
  }

  // Adds one entry to the page and to window.chatLog. `text` is the whole message, without its
  // trailing newline.
  function addEntry(kind, text, binary, byteLength) {
    const follow = kind === 'me' || atBottom();
    const entry = document.createElement('div');
    entry.className = 'entry ' + kind;

    let body = text;
    const tagged = kind === 'in' ? TAGGED.exec(text) : null;
    if (tagged) {
      const tag = span('tag', tagged[1]);
      tag.title = 'client ' + tagged[1];
      entry.append(tag);
      body = text.slice(tagged[0].length);
    }
    entry.append(span('text', body));
    if (binary) entry.append(span('marker', 'binary · ' + byteLength + ' bytes'));

    logEl.append(entry);
    window.chatLog.push({ kind, text, binary });

    while (logEl.childElementCount > MAX_ENTRIES) logEl.firstElementChild.remove();
    if (window.chatLog.length > MAX_ENTRIES) window.chatLog.splice(0, window.chatLog.length - MAX_ENTRIES);

    if (follow) logEl.scrollTop = logEl.scrollHeight;
  }

  function receive(event) {
    let text;
    let binary = false;
    let byteLength = 0;
    if (typeof event.data === 'string') {
      text = event.data;
    } else {
      binary = true;
      byteLength = event.data.byteLength;
      text = decoder.decode(new Uint8Array(event.data));
    }
    text = stripNewline(text);
    const kind = NOTICE.test(text) ? 'notice' : 'in';
    addEntry(kind, text, binary, byteLength);
  }

  function closeDetail(event) {
    const why = event.reason || CLOSE_TEXT[event.code];
    if (why) return ' (' + event.code + ' ' + why + ')';
    return '';
  }

  function formatSeconds(ms) {
    const s = ms / 1000;
    return (s < 10 ? s.toFixed(1).replace(/\.0$/, '') : Math.round(s)) + ' s';
  }

  function connect() {
    setState('connecting', 'connecting…');
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(scheme + '//' + location.host + '/ws');
    ws.binaryType = 'arraybuffer';
    socket = ws;

    ws.addEventListener('open', () => {
      openedAt = Date.now();
      window.chatSocketOpens += 1;
      setState('open', 'connected');
    });
    ws.addEventListener('message', receive);
    ws.addEventListener('close', (event) => {
      if (socket !== ws) return;
      socket = null;
      // A connection that stayed up a while starts the back-off over; one that the server
      // closes at once (say, origin not allowed) keeps doubling it.
      if (openedAt && Date.now() - openedAt >= STABLE_AFTER) delay = FIRST_DELAY;
      openedAt = 0;
      // Up to 20% either way, so that many pages do not come back in step after a restart.
      const wait = Math.round(delay * (0.8 + 0.4 * Math.random()));
      delay = Math.min(delay * 2, MAX_DELAY);
      setState('closed', 'disconnected' + closeDetail(event) + ' — retrying in ' + formatSeconds(wait));
      setTimeout(connect, wait);
    });
    // An error is always followed by a close event, which does the work.
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const text = input.value;
    if (text === '' || !socket || socket.readyState !== WebSocket.OPEN) return;
    // One typed line is one line for everyone: terminal clients in raw mode see it end, and in
    // line mode the relay would add the newline anyway.
    socket.send(text + '\n');
    addEntry('me', text, false, 0);
    input.value = '';
    input.focus();
  });

  connect();
})();
