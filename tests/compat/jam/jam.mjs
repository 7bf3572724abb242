// jmap-jam's own login flow against tidings: a bearer token, the session, Mailbox/get, then
// Email/query and Email/get in one request (a result reference). Prints one JSON object for
// tests/compat/test_jmap_jam.py. Input: JAM_SESSION_URL, JAM_TOKEN (the environment, not argv:
// a token in argv is visible in the process list).
import JamClient from "jmap-jam";

const sessionUrl = process.env.JAM_SESSION_URL;
const jam = new JamClient({ sessionUrl, bearerToken: process.env.JAM_TOKEN });
const session = await jam.session;
const accountId = await jam.getPrimaryAccount();

const [mailboxes] = await jam.api.Mailbox.get({ accountId, ids: null, properties: ["name", "role"] });
const inbox = mailboxes.list.find((mb) => mb.role === "inbox");

const [{ query, emails }] = await jam.requestMany((t) => {
  const query = t.Email.query({
    accountId,
    filter: { inMailbox: inbox.id },
    sort: [{ property: "receivedAt", isAscending: false }],
    limit: 10,
  });
  const emails = t.Email.get({
    accountId,
    ids: query.$ref("/ids"),
    properties: ["id", "subject", "from", "mailboxIds"],
  });
  return { query, emails };
});

// a wrong token: jam.request throws the problem details the server answered
let refused = null;
const wrong = new JamClient({ sessionUrl, bearerToken: "tdg_K0fff_" + "x".repeat(43) });
wrong.session = Promise.resolve(session); // its apiUrl, so that the API request itself is refused
try {
  await wrong.api.Mailbox.get({ accountId, ids: null });
} catch (err) {
  refused = err;
}

console.log(JSON.stringify({
  username: session.username,
  accountId,
  capabilities: Object.keys(session.capabilities),
  apiUrl: session.apiUrl,
  mailboxRoles: mailboxes.list.map((mb) => mb.role).sort(),
  inboxId: inbox.id,
  queryIds: query.ids,
  emails: emails.list,
  refused,
}));
