// Server -> client acknowledgements: "ask" makes the server emit_with_ack "question" to
// the client and return {"answer": <what the client's callback was called with>}.
// argv: <url> <mode>
"use strict";

const { ack, args, client, connected, done, main, step, view } = require("./lib");

const { url, mode } = args();

main(async () => {
  const socket = client(url, mode);
  // The question says how to answer: the callback is called with `reply` as its arguments.
  const questions = [];
  socket.on("question", (question, callback) => {
    questions.push(question);
    callback(...question.reply);
  });
  step.current = "connect";
  await connected(socket);

  step.current = "ask";
  const out = {
    ask_object: await ack(socket, "ask", { reply: [{ n: 42, s: "x" }] }),
    ask_many: await ack(socket, "ask", { reply: ["a", 2, null] }),
    ask_none: await ack(socket, "ask", { reply: [] }),
    questions: view(questions),
  };
  done(out, socket);
});
