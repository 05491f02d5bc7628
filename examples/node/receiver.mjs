// A walhook receiver in Node: verifies each request with the Standard
// Webhooks library, then acts on the event.
//
//   npm install            # standardwebhooks
//   WEBHOOK_SECRET=whsec_... node receiver.mjs
//
// walhook's endpoint url: http://127.0.0.1:8080/hooks/users
import http from "node:http";
import { Webhook } from "standardwebhooks";

const wh = new Webhook(process.env.WEBHOOK_SECRET); // "whsec_..." as walhook has it
const port = Number(process.env.PORT ?? 8080);
const seen = new Set(); // use your database: webhook-id repeats when walhook retries

http
  .createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      let event;
      try {
        // The raw body, exactly as sent: re-serialised JSON would not verify.
        event = wh.verify(Buffer.concat(chunks), req.headers);
      } catch (err) {
        console.log(`rejected: ${err.message}`);
        res.writeHead(401).end();
        return;
      }
      const id = req.headers["webhook-id"];
      if (!seen.has(id)) {
        seen.add(id);
        console.log(`${event.type} ${event.id} user ${event.data.id}`, event.previous ?? "");
      }
      res.writeHead(204).end(); // any 2xx acknowledges; answer fast, work later
    });
  })
  .listen(port, "127.0.0.1", () => console.log(`listening on 127.0.0.1:${port}`));
