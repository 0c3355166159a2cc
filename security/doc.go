// Package security fills the API's security slots (rpc.Options'
// Authenticator, Authorizer and Auditor) from the configuration's security
// key, and makes what a secured cluster needs: TLS configurations that
// reload their certificate, certificates (ca, node, client) and API keys.
//
// Who a caller is: the common name of a client certificate signed by the
// cluster's CA (mTLS), or the principal of an API key sent as
// "Authorization: Bearer KEY", whose SHA-256 is in the keys file. What a
// caller may do: the ACL's rules on name prefixes (read, use, admin). What
// happened: the audit log, one JSON line per request. State holds the
// reloadable part (certificate, CA, keys, ACL) behind one atomic pointer,
// so that SIGHUP swaps it whole or not at all. See docs/security.md.
package security
