// Typed doors: a service that declares its calls' and casts' arguments (`args`) has every call and
// cast checked before its handler runs, whichever door it comes through: the kernel's client, a
// batch, a pool, another service. A mismatch is refused with E_ARGS_INVALID naming the argument
// and what was expected, and the state is as it was. Real worker threads throughout.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Kernel, type ClientOf, type TheseusError } from '../../kernel/index.ts';
import { deserializeError } from '../../kernel/common/errors.ts';
import { REPLY_OK, type BatchedResult } from '../../kernel/common/protocol.ts';
import { defineService, Type } from '../../kernel/service.ts';
import type sequenceV3 from '../../services/sequence/0.3.0/sequence.ts';
import type typedTally from '../fixtures/services/typed-tally.ts';
import { fixture, logCollector, parseSequenceReply, sequenceEntry, waitUntil } from '../helpers.ts';

type Untyped = Record<string, (...args: unknown[]) => Promise<unknown>>;

/** The refusal of `service.method()`, with the words that name the argument and what it should be. */
function refused(service: string, method: string, ...says: RegExp[]) {
  return (error: TheseusError) => {
    assert.equal(error.code, 'E_ARGS_INVALID', error.message);
    assert.ok(error.message.startsWith(`${service}.${method}() was refused: `), error.message);
    for (const words of says) assert.match(error.message, words);
    return true;
  };
}

const outcome = (result: BatchedResult) => (result[0] === REPLY_OK ? result[1] : deserializeError(result[1] as never).code);

test("sequence refuses incrementNumber('10') at the kernel's client, a batch and another service; the numbers stay consecutive, across an upgrade", async () => {
  const logs = logCollector();
  const kernel = await Kernel.start({
    release: '0.1.0',
    services: { sequence: { entry: sequenceEntry('0.1.0') }, relay: { entry: fixture('sequence-relay') } },
    onLog: logs.onLog,
  });
  try {
    // Typed as the service declares it: the compiler already refuses a string delta.
    const sequence = kernel.client<ClientOf<typeof sequenceV3>>('sequence');
    const untyped = kernel.client<Untyped>('sequence');
    let expected = parseSequenceReply(await sequence.nextNumber()) + 1;
    const next = async () => assert.equal(parseSequenceReply(await sequence.nextNumber()), expected++);

    // A cast answers nothing: its refusal goes to the log, and the state stays a number.
    // @ts-expect-error incrementNumber takes a number: the type follows from the schema.
    sequence.incrementNumber('10');
    await next();
    const castRefusals = () => logs.records.filter((r) => r.level === 'error' && (r.data as { code?: string } | undefined)?.code === 'E_ARGS_INVALID');
    await waitUntil('the refused cast to be logged', () => castRefusals().length === 1);
    assert.match(castRefusals()[0]!.message, /incrementNumber\(\) was refused: argument 0 \(delta\) should be safe integer, and is the string "10"/);

    // Asked before the cast is sent (as the control socket does for a cast): the same answer.
    await assert.rejects(kernel.checkArgs('sequence', 'incrementNumber', ['10']), refused('sequence', 'incrementNumber', /argument 0 \(delta\) should be safe integer, and is the string "10"/, /It takes incrementNumber\(delta: safe integer\)/));
    await assert.rejects(kernel.checkArgs('sequence', 'incrementNumber', [1.5]), refused('sequence', 'incrementNumber', /should be safe integer, and is 1\.5/));
    await assert.rejects(kernel.checkArgs('sequence', 'incrementNumber', []), refused('sequence', 'incrementNumber', /argument 0 \(delta\) is missing: expected delta: safe integer/));
    await assert.rejects(kernel.checkArgs('sequence', 'incrementNumber', [1, 2]), refused('sequence', 'incrementNumber', /it takes 1 argument and was given 2/));
    await kernel.checkArgs('sequence', 'incrementNumber', [3]);
    await kernel.checkArgs('sequence', 'nextNumber', []);

    // A call with arguments it does not take, and an HTTP handler called with something else than a request.
    await assert.rejects(untyped.nextNumber!(5), refused('sequence', 'nextNumber', /it takes no arguments and was given 1/));
    await assert.rejects(untyped.httpNext!({ path: '/next' }), refused('sequence', 'httpNext', /argument 0 \(request\) at \/method should be string, and is missing/));
    await next();

    // A batch: the refused call fails alone, and the calls around it run on the state as it was.
    const batch = await kernel.callBatch('sequence', [['nextNumber'], ['nextNumber', ['10']], ['nextNumber']]);
    assert.deepEqual(batch.map(outcome), [expected, 'E_ARGS_INVALID', expected + 1]);
    assert.match(deserializeError(batch[1]![1] as never).message, /nextNumber\(\) was refused: it takes no arguments and was given 1/);
    expected += 2;
    await next();

    // Another service, over the direct port between the two workers: refused to it, with the same message.
    const relay = kernel.client<{ relayCall(method: string, args: unknown[]): Promise<{ code?: string; message?: string; reply?: unknown }>; relayCast(method: string, args: unknown[]): void }>('relay');
    const viaRelay = await relay.relayCall('nextNumber', ['10']);
    assert.equal(viaRelay.code, 'E_ARGS_INVALID');
    assert.match(viaRelay.message!, /^sequence\.nextNumber\(\) was refused: it takes no arguments and was given 1/);
    relay.relayCast('incrementNumber', ['10']);
    await waitUntil('the cast refused from the other service to be logged', () => castRefusals().length === 2);
    assert.deepEqual(await relay.relayCall('nextNumber', []), { reply: expected++ });
    // The relay's own arguments are checked too.
    await assert.rejects(kernel.client<Untyped>('relay').relayCall!('nextNumber', 'not an array'), refused('relay', 'relayCall', /argument 1 \(args\) should be anything\[\], and is the string "not an array"/));
    await next();

    // A delta that fits is taken: 0.1.0 adds it once.
    sequence.incrementNumber(10);
    expected += 10;
    await next();

    // Across an upgrade to 0.3.0 (state vsn 0 -> 1), the state is a clean number, and 0.3.0 refuses the same.
    const report = await kernel.upgrade({ release: '0.3.0', services: { sequence: { entry: sequenceEntry('0.3.0') }, relay: { entry: fixture('sequence-relay') } } });
    assert.equal(report.outcome, 'switched', report.error?.message);
    await next();
    // @ts-expect-error as above
    sequence.incrementNumber('10');
    await next();
    await waitUntil('the refused cast in 0.3.0 to be logged', () => castRefusals().length === 3);
    assert.equal(castRefusals()[2]!.release, '0.3.0');
    // 0.3.0 makes the delta the step between numbers.
    sequence.incrementNumber(3);
    assert.equal(parseSequenceReply(await sequence.nextNumber()), expected);
    assert.equal(parseSequenceReply(await sequence.nextNumber()), expected + 3);
  } finally {
    await kernel.stop();
  }
});

test('a refusal names the path inside an argument; optional trailing arguments may be left out; a declared cast is refused and logged', async () => {
  const logs = logCollector();
  const kernel = await Kernel.start({ release: '1', services: { tally: { entry: fixture('typed-tally') } }, onLog: logs.onLog });
  try {
    const tally = kernel.client<ClientOf<typeof typedTally>>('tally');
    const untyped = kernel.client<Untyped>('tally');
    assert.equal(await tally.add(2), 2);
    await assert.rejects(untyped.add!(0), refused('tally', 'add', /argument 0 \(amount\) should be integer \(>= 1\), and is 0/, /It takes add\(amount: integer \(>= 1\)\)/));
    assert.deepEqual(await tally.addWithNote(1), { tally: 3, note: null });
    assert.deepEqual(await tally.addWithNote(1, { note: 'hi' }), { tally: 4, note: 'hi' });
    await assert.rejects(untyped.addWithNote!(1, { note: 7 }), refused('tally', 'addWithNote', /argument 1 \(options\) at \/note should be string, and is 7/));
    await assert.rejects(untyped.addWithNote!(1, { note: 'x' }, 'extra'), refused('tally', 'addWithNote', /it takes 2 arguments and was given 3/));
    // @ts-expect-error an amount is a number
    tally.bump('5');
    assert.equal(await tally.get(), 4, 'nothing refused changed the tally');
    await waitUntil('the refused cast to be logged', () => logs.records.some((r) => r.level === 'error' && r.message.includes('bump() was refused')));
    tally.bump(5);
    assert.equal(await tally.get(), 9);
  } finally {
    await kernel.stop();
  }
});

test('a pooled service refuses a call and a cast that do not match, on every thread, and serves on', async () => {
  const logs = logCollector();
  const kernel = await Kernel.start({ release: '1', services: { squares: { entry: fixture('typed-pooled'), pool: { size: 2 } } }, onLog: logs.onLog });
  try {
    const squares = kernel.client<Untyped & { note(text: unknown): void }>('squares');
    assert.equal(await squares.square!(12), 144);
    // More refusals than threads: each thread refuses, none runs the handler (which would answer NaN or 100).
    for (let i = 0; i < 4; i++) await assert.rejects(squares.square!('10'), refused('squares', 'square', /argument 0 \(n\) should be integer, and is the string "10"/));
    const batch = await kernel.callBatch('squares', [['square', [3]], ['square', [[3]]], ['square', [4]]]);
    assert.deepEqual(batch.map(outcome), [9, 'E_ARGS_INVALID', 16]);
    await assert.rejects(kernel.checkArgs('squares', 'note', [42]), refused('squares', 'note', /argument 0 \(text\) should be string, and is 42/));
    await kernel.checkArgs('squares', 'note', ['fine']);
    squares.note(42);
    await waitUntil('the refused cast to be logged', () => logs.records.some((r) => r.level === 'error' && r.message.includes('note() was refused')));
    squares.note('a note that fits');
    await waitUntil('the cast that fits to run', () => logs.records.some((r) => r.message === 'note: a note that fits'));
    assert.equal(logs.records.some((r) => r.message === 'note: 42'), false, 'the refused cast never ran');
    assert.deepEqual(kernel.methods('squares').args.square, [{ title: 'n', type: 'integer' }], 'the pool describes what it declares');
  } finally {
    await kernel.stop();
  }
});

test('a service that declares no args works as before: its arguments are not checked', async () => {
  const kernel = await Kernel.start({ release: '1', services: { counter: { entry: fixture('counter-v1') } }, ...logCollector() });
  try {
    const counter = kernel.client<Untyped>('counter');
    assert.equal(await counter.add!(2), 2);
    // Unchecked, as a service without schemas always was: the handler runs with what it is given.
    assert.equal(await counter.add!('5'), '25');
    assert.deepEqual(kernel.methods('counter').args, {});
    await kernel.checkArgs('counter', 'add', ['anything', 'at', 'all']);
  } finally {
    await kernel.stop();
  }
});

test('defineService refuses args that are not TypeBox schemas or name no method, before anything runs', async () => {
  const { validateDefinition } = await import('../../kernel/worker/definition.ts');
  const base = { vsn: '0', init: () => 0, calls: { add: () => ({ reply: 1 }) } };
  assert.match(validateDefinition({ ...base, args: { add: [{ type: 'integer' }] } }) ?? '', /args\.add\[0\] is not a TypeBox schema/);
  assert.match(validateDefinition({ ...base, args: { nope: [] } }) ?? '', /args\.nope names no call or cast/);
  assert.match(validateDefinition({ ...base, args: { add: Type.Integer() } }) ?? '', /args\.add must be an array/);
  assert.equal(validateDefinition({ ...base, args: { add: [Type.Integer()] } }), null);
});

// Type-level: a handler's parameters follow from its schemas (tsc -p . checks this file).
defineService({
  vsn: '0',
  init: () => 0,
  args: { add: [Type.Integer()], label: [Type.String(), Type.Optional(Type.Boolean())] },
  calls: {
    // @ts-expect-error the schema says the amount is a number
    add: ({ state }, amount: string) => ({ reply: state + amount }),
    label: (_ctx, text, loud) => ({ reply: loud === true ? text.toUpperCase() : text }),
  },
});
