/*
 * Presence for any Socket.IO client (browser or Node; no dependencies): keep the list of who
 * is in a topic from the events of rooms.presence.
 *
 *   presence_state  {topic, state: {key: [meta, ...]}}                  once, on subscribing
 *   presence_diff   {topic, joins: {key: [meta, ...]}, leaves: {key: [meta, ...]}}    after
 *
 * Every meta carries its "ref" (one per tracked socket): a diff removes the metas of
 * "leaves" by ref, then adds those of "joins" (replacing one with the same ref); a key with
 * no meta left is gone.
 *
 *   const stop = syncPresence(socket, "lobby", (list, diff) => {
 *     render(Object.keys(list));          // list: {key: [meta, ...]}
 *     if (diff) announce(diff.joins, diff.leaves);   // diff: null for a full state
 *   });
 *   socket.emit("enter", "lobby");        // your handler calls presence.subscribe(socket, "lobby")
 *
 * Load it with <script src="presence.js"> (then window.syncPresence) or require() it.
 */
(function (root) {
  "use strict";

  function emptyList() {
    return Object.create(null); // keys are the application's: "__proto__" is one like any other
  }

  /** A new list from a presence_state's "state". */
  function fromState(state) {
    const list = emptyList();
    for (const key of Object.keys(state || {})) {
      if (state[key].length) list[key] = state[key].slice();
    }
    return list;
  }

  /** Apply a presence_diff to a list, in place: leaves first, then joins, by ref. */
  function applyDiff(list, diff) {
    const leaves = diff.leaves || {};
    for (const key of Object.keys(leaves)) {
      const gone = new Set(leaves[key].map((meta) => meta.ref));
      const kept = (list[key] || []).filter((meta) => !gone.has(meta.ref));
      if (kept.length) list[key] = kept;
      else delete list[key];
    }
    const joins = diff.joins || {};
    for (const key of Object.keys(joins)) {
      const added = new Set(joins[key].map((meta) => meta.ref));
      const kept = (list[key] || []).filter((meta) => !added.has(meta.ref));
      list[key] = kept.concat(joins[key]);
    }
    return list;
  }

  /**
   * Keep a {key: [meta, ...]} list of `topic` in sync; onChange(list, diff) after the state
   * (diff null) and after every diff. Returns a function that stops listening.
   */
  function syncPresence(socket, topic, onChange) {
    let list = null; // until the state comes, diffs have nothing to apply to

    function onState(payload) {
      if (!payload || payload.topic !== topic) return;
      list = fromState(payload.state);
      onChange(list, null);
    }

    function onDiff(payload) {
      if (!payload || payload.topic !== topic || list === null) return;
      applyDiff(list, payload);
      onChange(list, { joins: payload.joins || {}, leaves: payload.leaves || {} });
    }

    socket.on("presence_state", onState);
    socket.on("presence_diff", onDiff);
    return function stop() {
      socket.off("presence_state", onState);
      socket.off("presence_diff", onDiff);
    };
  }

  const api = { syncPresence, applyDiff, fromState };
  if (typeof module === "object" && module.exports) module.exports = api;
  else Object.assign(root, api);
})(typeof globalThis !== "undefined" ? globalThis : this);
