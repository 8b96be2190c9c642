import time
from tests.control.conftest import SimPod
import pytest

@pytest.mark.parametrize("transport", ["ssh"])
async def test_dbg(make_controller, sim_pod: SimPod) -> None:
    ctl = await make_controller(sim_pod.model("first"))
    orig = ctl._facts
    def facts(model, view):
        f = orig(model, view)
        s = view.sample
        print("FACTS", round(time.time(), 2), s.seq if s else None, s.t if s else None, ctl.lifecycle._launching, ctl.lifecycle.launched, f, [(v.pid, v.kind) for v in s.vllm if v.served == "first"] if s else None)
        return f
    ctl._facts = facts
    ctl.subscribe(lambda s: print("STATE", round(time.time(), 2), s.model("first").state, s.model("first").hint))
    await ctl.up(lambda n, s: print("PROG", round(time.time(), 2), n, s))
