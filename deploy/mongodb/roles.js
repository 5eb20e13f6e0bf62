// Least privilege on MongoDB 7 (production): one user per service, each with a role
// that allows its own database and, in the key vault, exactly what it does there.
// Only intake may create or destroy case keys; referral and notify only read them.
//
// FerretDB v1 (the local store) does not enforce roles: it accepts no `roles` in
// createUser and has no createRole (FerretDB issues #174, #1528). This script is for a
// real MongoDB. Run it once as a user administrator, with the passwords in the shell's
// environment, never in this file:
//
//   INTAKE_PW=... REFERRAL_PW=... NOTIFY_PW=... CONSOLE_PW=... OPERATOR_PW=... \
//     mongosh "mongodb://admin@db.example:27017/admin" deploy/mongodb/roles.js
//
// Database names are the defaults (LINTAS_<SERVICE>_DATABASE, LINTAS_KEYVAULT_DATABASE,
// LINTAS_OPS_DATABASE); change them here if a deployment changes those.
// Each service then connects with LINTAS_MONGODB_URI=mongodb://<user>:<pw>@.../?authSource=admin

const KEYVAULT = "lintas_keyvault";
const admin = db.getSiblingDB("admin");

function keyvault(collection, actions) {
  return { resource: { db: KEYVAULT, collection: collection }, actions: actions };
}

function ownDatabase(name) {
  // readWrite plus the index builds each service runs at start.
  return [
    {
      resource: { db: name, collection: "" },
      actions: [
        "find", "insert", "update", "remove",
        "createCollection", "createIndex", "listCollections", "listIndexes",
        "collStats", "dbStats",
      ],
    },
  ];
}

const READ = ["find", "listIndexes"];
const roles = {
  "lintas-intake": ownDatabase("lintas_intake").concat([
    // Creates a case's key at submission, destroys it at erasure.
    keyvault("case_keys", ["find", "insert", "remove", "createIndex", "listIndexes"]),
    keyvault("audit_checkpoints", ["find", "insert", "update", "createIndex", "listIndexes"]),
  ]),
  "lintas-referral": ownDatabase("lintas_referral").concat([
    keyvault("case_keys", READ),
    keyvault("audit_checkpoints", ["find", "insert", "update", "createIndex", "listIndexes"]),
  ]),
  "lintas-notify": ownDatabase("lintas_notify").concat([keyvault("case_keys", READ)]),
  "lintas-console": ownDatabase("lintas_console"),
  // `lintas keys rotate` re-wraps keys; `lintas audit verify` reads both chains;
  // `lintas dlq` keeps its ledger. Never a service's login.
  "lintas-operator": ownDatabase("lintas_ops").concat([
    keyvault("case_keys", ["find", "update"]),
    keyvault("audit_checkpoints", ["find"]),
    // … and re-seals partners' webhook secrets under the new master key.
    { resource: { db: "lintas_referral", collection: "partners" }, actions: ["find", "update"] },
    { resource: { db: "lintas_intake", collection: "audit" }, actions: ["find"] },
    { resource: { db: "lintas_referral", collection: "audit" }, actions: ["find"] },
  ]),
};

const passwords = {
  "lintas-intake": process.env.INTAKE_PW,
  "lintas-referral": process.env.REFERRAL_PW,
  "lintas-notify": process.env.NOTIFY_PW,
  "lintas-console": process.env.CONSOLE_PW,
  "lintas-operator": process.env.OPERATOR_PW,
};

for (const [name, privileges] of Object.entries(roles)) {
  if (!passwords[name]) throw new Error(`no password for ${name} in the environment`);
  if (admin.getRole(name)) {
    admin.updateRole(name, { privileges: privileges, roles: [] });
  } else {
    admin.createRole({ role: name, privileges: privileges, roles: [] });
  }
  if (admin.getUser(name)) {
    admin.updateUser(name, { pwd: passwords[name], roles: [{ role: name, db: "admin" }] });
  } else {
    admin.createUser({ user: name, pwd: passwords[name], roles: [{ role: name, db: "admin" }] });
  }
  print(`${name}: role and user set`);
}
