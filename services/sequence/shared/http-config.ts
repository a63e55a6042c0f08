// The HTTP front door of every release of the sequence app: GET /next and POST /increment.
// Port 0 takes any free port (`kernel status` shows it). The port and address are read when the
// release is built, so `SEQUENCE_HTTP_PORT=4000 kernel release ...` fixes the port, and
// `SEQUENCE_HTTP_HOST=0.0.0.0` makes a release that a fleet's balancer reaches on every host.
export const sequenceHttp = {
  listeners: [
    {
      port: Number(process.env.SEQUENCE_HTTP_PORT ?? 0),
      host: process.env.SEQUENCE_HTTP_HOST ?? '127.0.0.1',
      routes: [
        { method: 'GET' as const, path: '/next', service: 'sequence', handler: 'httpNext' },
        { method: 'POST' as const, path: '/increment', service: 'sequence', handler: 'httpIncrement' },
      ],
    },
  ],
  maxBodyBytes: 64 * 1024,
};
