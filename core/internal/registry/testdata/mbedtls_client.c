/*
 * mbedtls_client: registers with an LwM2M server over DTLS 1.2 with a PSK,
 * as an mbedTLS-based client (Anjay, Zephyr, ...) with mbedTLS's default
 * settings does: default preset, default cipher suite list.
 *
 *   mbedtls_client host port identity key-ascii uri-query payload
 *
 * sends CON POST /rd?<uri-query> (Content-Format 40) and prints
 *   code=2.01 cipher=TLS-PSK-WITH-AES-128-GCM-SHA256 location=rd/<id>
 * Exits 0 when a response arrives, 2 on a handshake failure, 3 on a timeout
 * or another error after the handshake, 1 on bad usage or setup.
 *
 * Written for the mbedTLS 2.28 API (Debian bookworm's libmbedtls-dev):
 *   gcc -std=c99 -o mbedtls_client mbedtls_client.c -lmbedtls -lmbedx509 -lmbedcrypto
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>
#include <mbedtls/timing.h>

#define BUF 1024

static void fail(int ret, const char *what)
{
	char msg[200];
	mbedtls_strerror(ret, msg, sizeof msg);
	fprintf(stderr, "%s: -0x%04x %s\n", what, (unsigned)-ret, msg);
}

/* put_opt appends one CoAP option (RFC 7252 3.1). Option numbers are deltas
 * from the previous one; deltas and lengths above 12 spill into 1 (nibble
 * 13, value-13) or 2 (nibble 14, value-269) extended bytes. Returns the new
 * end, or NULL when it does not fit before lim. */
static unsigned char *put_opt(unsigned char *p, const unsigned char *lim, unsigned *last,
			      unsigned num, const void *val, size_t len)
{
	unsigned delta = num - *last, v[2] = {delta, (unsigned)len}, nib[2];
	unsigned char ext[4];
	size_t n = 0;
	for (int i = 0; i < 2; i++) {
		if (v[i] < 13) {
			nib[i] = v[i];
		} else if (v[i] < 269) {
			nib[i] = 13;
			ext[n++] = (unsigned char)(v[i] - 13);
		} else {
			nib[i] = 14;
			ext[n++] = (unsigned char)((v[i] - 269) >> 8);
			ext[n++] = (unsigned char)(v[i] - 269);
		}
	}
	if (len > 65535 + 269 || p + 1 + n + len > lim)
		return NULL;
	*p++ = (unsigned char)(nib[0] << 4 | nib[1]);
	memcpy(p, ext, n); /* delta's extended bytes come before length's */
	p += n;
	memcpy(p, val, len);
	*last = num;
	return p + len;
}

/* get_ext reads an option's delta or length from its nibble; -1 if bad. */
static long get_ext(unsigned nib, const unsigned char **p, const unsigned char *end)
{
	if (nib < 13)
		return nib;
	if (nib == 13 && *p + 1 <= end)
		return 13 + *(*p)++;
	if (nib == 14 && *p + 2 <= end) {
		long v = 269 + ((*p)[0] << 8 | (*p)[1]);
		*p += 2;
		return v;
	}
	return -1; /* 15 is the payload marker/reserved */
}

int main(int argc, char **argv)
{
	if (argc != 7) {
		fprintf(stderr, "usage: %s host port identity key-ascii uri-query payload\n", argv[0]);
		return 1;
	}
	const char *host = argv[1], *port = argv[2], *identity = argv[3], *key = argv[4];
	const char *query = argv[5], *payload = argv[6];

	mbedtls_net_context net;
	mbedtls_ssl_context ssl;
	mbedtls_ssl_config conf;
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_timing_delay_context timer;
	int ret, rc = 1;
	mbedtls_net_init(&net);
	mbedtls_ssl_init(&ssl);
	mbedtls_ssl_config_init(&conf);
	mbedtls_entropy_init(&entropy);
	mbedtls_ctr_drbg_init(&drbg);

	if ((ret = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, NULL, 0)) != 0 ||
	    (ret = mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_DATAGRAM,
					       MBEDTLS_SSL_PRESET_DEFAULT)) != 0) {
		fail(ret, "setup");
		goto out;
	}
	/* No mbedtls_ssl_conf_ciphersuites: the client offers mbedTLS's whole
	 * default list (ECDHE-ECDSA, ..., PSK) and the server picks. */
	mbedtls_ssl_conf_rng(&conf, mbedtls_ctr_drbg_random, &drbg);
	mbedtls_ssl_conf_read_timeout(&conf, 5000);
	if ((ret = mbedtls_ssl_conf_psk(&conf, (const unsigned char *)key, strlen(key),
					(const unsigned char *)identity, strlen(identity))) != 0 ||
	    (ret = mbedtls_ssl_setup(&ssl, &conf)) != 0) {
		fail(ret, "setup");
		goto out;
	}
	/* mbedTLS retransmits handshake flights (and times reads out) off
	 * these timer callbacks; without them a DTLS handshake cannot run. */
	mbedtls_ssl_set_timer_cb(&ssl, &timer, mbedtls_timing_set_delay, mbedtls_timing_get_delay);
	if ((ret = mbedtls_net_connect(&net, host, port, MBEDTLS_NET_PROTO_UDP)) != 0) {
		fail(ret, "connect");
		goto out;
	}
	mbedtls_ssl_set_bio(&ssl, &net, mbedtls_net_send, mbedtls_net_recv, mbedtls_net_recv_timeout);

	while ((ret = mbedtls_ssl_handshake(&ssl)) != 0) {
		if (ret != MBEDTLS_ERR_SSL_WANT_READ && ret != MBEDTLS_ERR_SSL_WANT_WRITE) {
			fail(ret, "handshake failed");
			rc = 2;
			goto out;
		}
	}

	/* CON POST: ver 1, type 0 (CON), 4-byte token, random message ID. */
	unsigned char req[BUF], *p = req, *lim = req + sizeof req, tok[4], mid[2];
	mbedtls_ctr_drbg_random(&drbg, tok, sizeof tok);
	mbedtls_ctr_drbg_random(&drbg, mid, sizeof mid);
	*p++ = 0x40 | sizeof tok;
	*p++ = 0x02; /* 0.02 POST */
	*p++ = mid[0];
	*p++ = mid[1];
	memcpy(p, tok, sizeof tok);
	p += sizeof tok;
	unsigned last = 0;
	const unsigned char cf = 40; /* application/link-format */
	p = put_opt(p, lim, &last, 11, "rd", 2); /* Uri-Path */
	if (p)
		p = put_opt(p, lim, &last, 12, &cf, 1); /* Content-Format */
	for (const char *q = query; p && *q;) { /* Uri-Query, one per '&' */
		size_t n = strcspn(q, "&");
		p = put_opt(p, lim, &last, 15, q, n);
		q += n + (q[n] == '&');
	}
	size_t plen = strlen(payload);
	if (!p || (plen && p + 1 + plen > lim)) {
		fprintf(stderr, "request does not fit %d bytes\n", BUF);
		goto out;
	}
	if (plen) {
		*p++ = 0xFF;
		memcpy(p, payload, plen);
		p += plen;
	}
	while ((ret = mbedtls_ssl_write(&ssl, req, (size_t)(p - req))) < 0) {
		if (ret != MBEDTLS_ERR_SSL_WANT_READ && ret != MBEDTLS_ERR_SSL_WANT_WRITE) {
			fail(ret, "write");
			rc = 3;
			goto out;
		}
	}

	unsigned char res[BUF];
	for (;;) {
		ret = mbedtls_ssl_read(&ssl, res, sizeof res);
		if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE)
			continue;
		if (ret <= 0) {
			fail(ret, ret == MBEDTLS_ERR_SSL_TIMEOUT ? "no response" : "read");
			rc = 3;
			goto out;
		}
		const unsigned char *r = res, *end = res + ret;
		unsigned tkl = res[0] & 0x0F, type = res[0] >> 4 & 3;
		if (ret < 4 || (res[0] >> 6) != 1 || ret < 4 + (int)tkl)
			continue; /* not CoAP 1 */
		/* An empty ACK means a separate response follows (RFC 7252 5.2.2). */
		if (res[1] == 0 || tkl != sizeof tok || memcmp(res + 4, tok, sizeof tok) != 0)
			continue;
		if (type == 0) { /* CON separate response: ACK it, same message ID */
			unsigned char ack[4] = {0x60, 0, res[2], res[3]};
			mbedtls_ssl_write(&ssl, ack, sizeof ack);
		}
		char loc[BUF] = "";
		size_t ll = 0;
		const unsigned char *body = end;
		unsigned num = 0;
		for (r = res + 4 + tkl; r < end;) {
			if (*r == 0xFF) {
				body = r + 1;
				break;
			}
			unsigned b = *r++;
			long d = get_ext(b >> 4, &r, end), l = get_ext(b & 0x0F, &r, end);
			if (d < 0 || l < 0 || r + l > end)
				break; /* malformed: print what we have */
			num += (unsigned)d;
			if (num == 8 && ll + (size_t)l + 2 < sizeof loc) { /* Location-Path */
				ll += (size_t)sprintf(loc + ll, "%s%.*s", ll ? "/" : "", (int)l, (const char *)r);
			}
			r += l;
		}
		printf("code=%u.%02u cipher=%s location=%s body=%.*s\n", res[1] >> 5, res[1] & 0x1F,
		       mbedtls_ssl_get_ciphersuite(&ssl), loc, (int)(end - body), (const char *)body);
		rc = 0;
		break;
	}
	/* close_notify ends the server's session now rather than at its timeout. */
	while ((ret = mbedtls_ssl_close_notify(&ssl)) == MBEDTLS_ERR_SSL_WANT_WRITE)
		;

out:
	mbedtls_net_free(&net);
	mbedtls_ssl_free(&ssl);
	mbedtls_ssl_config_free(&conf);
	mbedtls_ctr_drbg_free(&drbg);
	mbedtls_entropy_free(&entropy);
	return rc;
}
