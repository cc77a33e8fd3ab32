"""`async for frame in server`: an asyncio program takes the newest fresh
frames while its event loop goes on with everything else."""

import asyncio
import time

import framelink
from conftest import WAIT


async def slow_loop(server, n):
    """Takes `n` frames, awaiting 200 ms on each (a detector behind an
    async call), while a ticker counts 10 ms ticks beside it."""
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    beside = asyncio.create_task(ticker())
    ages, ids = [], []
    async for frame in server:
        ages.append(frame.age_ms)
        ids.append(frame.frame_id)
        await asyncio.sleep(0.2)
        frame.reply({"n": len(ids)})
        if len(ids) == n:
            break
    beside.cancel()
    return ticks, ages, ids


def test_a_slow_coroutine_gets_the_newest_fresh_frames_and_the_loop_never_blocks(programs):
    with framelink.Server(listen="127.0.0.1:0") as server:
        programs.client(server.address, "--fps", 30, "--width", 320, "--height", 240)
        t0 = time.monotonic()
        ticks, ages, ids = asyncio.run(asyncio.wait_for(slow_loop(server, 6), WAIT))
        elapsed = time.monotonic() - t0
    # The ticker ran all along: waiting for frames never held the loop.
    assert ticks >= elapsed * 100 * 0.5, (ticks, elapsed)
    # The newest frame each time, never a queue: at 30 fps about six frames
    # come in each 200 ms, so the ids handed jump.
    assert all(b - a >= 3 for a, b in zip(ids, ids[1:])), ids
    # Fresh when handed: under the 80 ms threshold at the take.
    assert max(ages) <= 80 + 20, ages


def test_async_iteration_ends_when_the_server_closes():
    async def loop(server):
        got = []
        async for frame in server.aframes():
            got.append(frame)
        return got

    server = framelink.Server(listen="127.0.0.1:0")

    async def main():
        task = asyncio.create_task(loop(server))
        await asyncio.sleep(0.3)
        await asyncio.get_running_loop().run_in_executor(None, server.close)
        return await asyncio.wait_for(task, WAIT)

    assert asyncio.run(main()) == []
