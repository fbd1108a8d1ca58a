"""A witness that a call releases the GIL: another Python thread that keeps evaluating a condition while the
call runs. The condition is chosen so that it can only hold while the call is half done (see each test), so
a count above zero proves that Python code ran during the call. No clock is involved."""
import threading


def count_while(halfway, work):
    """Runs work() while another thread counts how often halfway() is true; returns that count."""
    done = threading.Event()
    seen = []

    def watcher():
        count = 0
        while not done.is_set():
            if halfway():
                count += 1
        seen.append(count)

    thread = threading.Thread(target=watcher)
    thread.start()
    try:
        work()
    finally:
        done.set()
        thread.join()
    return seen[0]
