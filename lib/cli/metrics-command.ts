/**
 * `sage-queue metrics --port N`: a Prometheus exporter for every queue on this machine. It serves
 * GET /metrics from a registry whose queue families read every segment at scrape time without
 * attaching (the applications are not touched, and a dead queue stays visible as dead).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

import { hostQueueSamples, promClient, registerQueueMetrics } from '../queue/metrics';
import { CliError, EXIT_FAILED, EXIT_USAGE } from './cli-error';

export interface MetricsCommandOptions {
  port: string;
  host: string;
  json: boolean;
}

function checkPort(text: string): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(port) || port > 65535) {
    throw new CliError(`--port must be an integer in [0, 65535] (0: any free port); got ${JSON.stringify(text)}`, EXIT_USAGE, 'ERR_INVALID_PORT');
  }
  return port;
}

/** Serves until SIGINT or SIGTERM, then closes the server and returns. */
export async function metricsCommand(opts: MetricsCommandOptions): Promise<void> {
  const port = checkPort(opts.port);
  const registry = new (promClient().Registry)();
  registerQueueMetrics(registry, hostQueueSamples);
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end();
    } else if (path === '/metrics') {
      registry.metrics().then(
        (body) => res.writeHead(200, { 'Content-Type': registry.contentType }).end(req.method === 'HEAD' ? undefined : body),
        (e: unknown) => res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`scrape failed: ${(e as Error).message ?? String(e)}\n`),
      );
    } else if (path === '/') {
      res.writeHead(200, { 'Content-Type': 'text/plain' }).end('sage-queue exporter: see /metrics\n');
    } else {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found: see /metrics\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(new CliError(`cannot listen on ${opts.host}:${port}: ${e.code ?? e.message}`, EXIT_FAILED, e.code === 'EADDRINUSE' ? 'ERR_ADDRESS_IN_USE' : 'ERR_LISTEN')),
    );
    server.listen(port, opts.host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}/metrics`;
  process.stdout.write(
    opts.json ? `${JSON.stringify({ url, host: address.address, port: address.port })}\n` : `serving ${url} (every sage-queue on this machine; Ctrl-C to stop)\n`,
  );
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      server.close(() => resolve());
      server.closeAllConnections();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
