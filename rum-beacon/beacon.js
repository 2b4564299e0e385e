/*! steerdns RUM beacon: times each CDN's test object in this browser, once per page view. */
(function () {
  'use strict';
  var w = window, d = document, s = d.currentScript, perf = w.performance;
  if (!s || !w.fetch || !w.AbortController || !perf || !perf.getEntriesByName) return;
  // Everything is fetched from the server this script came from.
  var origin = new URL(s.src, location.href).origin;
  var delay = +(s.getAttribute('data-delay') || 2000);
  var cfg, results = [];

  function later(f) {
    setTimeout(function () {
      (w.requestIdleCallback || function (g) { setTimeout(g, 1); })(f, { timeout: 10000 });
    }, delay);
  }

  // GET url with a cache-busting query; resolves to {e: timing entry or null, ms, n: bytes}, or
  // null when it failed or took longer than timeout_ms.
  function get(url, ms) {
    var ctl = new AbortController(), t0 = perf.now();
    var u = url + (url.indexOf('?') < 0 ? '?' : '&') + 'rum=' + Math.random().toString(36).slice(2);
    var timer = setTimeout(function () { ctl.abort(); }, ms);
    return fetch(u, { credentials: 'omit', mode: 'cors', signal: ctl.signal, referrerPolicy: 'no-referrer' })
      .then(function (r) {
        if (!r.ok) throw 0;
        return r.arrayBuffer();
      })
      .then(function (b) {
        clearTimeout(timer);
        var e = perf.getEntriesByName(new URL(u, location.href).href).pop();
        return { e: e, ms: e && e.duration > 0 ? e.duration : perf.now() - t0, n: b.byteLength };
      }, function () {
        clearTimeout(timer);
        return null;
      });
  }

  function r1(x) { return Math.round(x * 10) / 10; }

  function measure(t) {
    var out = { target: t.id }, timeout = cfg.timeout_ms;
    return get(t.small, timeout).then(function (cold) {
      if (!cold) { out.failed = true; return; }
      out.cold_ms = r1(cold.ms);
      var e = cold.e;
      // The phases are 0 unless the CDN sends Timing-Allow-Origin.
      if (e && e.requestStart > 0) {
        var tls = e.secureConnectionStart > 0 ? e.secureConnectionStart : e.connectEnd;
        out.dns_ms = r1(e.domainLookupEnd - e.domainLookupStart);
        out.connect_ms = r1(tls - e.connectStart);
        out.tls_ms = r1(e.connectEnd - tls);
        if (e.responseStart > e.requestStart) out.ttfb_ms = r1(e.responseStart - e.requestStart);
      }
      return get(t.small, timeout).then(function (warm) {
        if (!warm) { out.failed = true; return; }
        out.warm_ms = r1(warm.ms);
        var e = warm.e;
        if (e && e.requestStart > 0 && e.responseStart > e.requestStart) {
          out.ttfb_ms = r1(e.responseStart - e.requestStart);
        }
        if (!t.large) return;
        return get(t.large, timeout).then(function (big) {
          // kbit/s = bits per ms.
          if (big && big.n > 0) out.throughput_kbps = r1(big.n * 8 / big.ms);
        });
      });
    }).then(function () {
      results.push(out);
    });
  }

  function send() {
    if (!results.length) return;
    var body = JSON.stringify({ nonce: cfg.nonce, token: cfg.token, results: results });
    var url = origin + cfg.beacons;
    // text/plain keeps this a simple request: no CORS preflight.
    if (navigator.sendBeacon && navigator.sendBeacon(url, new Blob([body], { type: 'text/plain' }))) return;
    fetch(url, { method: 'POST', body: body, keepalive: true, credentials: 'omit', headers: { 'Content-Type': 'text/plain' } })
      .catch(function () {});
  }

  function run() {
    fetch(origin + '/rum/v1/config', { credentials: 'omit' })
      .then(function (r) { return r.json(); })
      .then(function (c) {
        cfg = c;
        if (!(Math.random() < c.sample_rate)) return;
        // Resolver mapping: the server sees which resolver asked for this nonce's name.
        return get(c.init, c.timeout_ms).then(function () {
          // One target at a time, in random order, so none pays for another's traffic.
          var ts = c.targets.slice(), p = Promise.resolve();
          ts.sort(function () { return Math.random() - 0.5; });
          ts.forEach(function (t) { p = p.then(function () { return measure(t); }); });
          return p.then(send);
        });
      })
      .catch(function () {});
  }

  if (d.readyState === 'complete') later(run);
  else w.addEventListener('load', function () { later(run); });
})();
