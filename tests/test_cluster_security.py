"""A cluster on a shared network: a local cluster listens on loopback only; a remote one is
reached over TLS with Dask's own settings; plain tcp beyond this machine warns in one line."""

import dask
import psutil
import pytest

from conftest import command
from vgg_transfer.runner import cluster
from vgg_transfer.spec.config import ConfigError


def _listening(pids: set[int]) -> list:
    return [c.laddr for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.pid in pids]


def test_a_local_cluster_listens_on_loopback_only():
    with cluster.connect(workers=2) as client:
        client.wait_for_workers(2, timeout=120)
        me = psutil.Process()
        ours = _listening({me.pid} | {child.pid for child in me.children(recursive=True)})
    # the scheduler, its HTTP endpoint, and each nanny and worker: none on another interface
    assert len(ours) >= 5, ours
    assert {address.ip for address in ours} == {"127.0.0.1"}, ours


def _certificates(folder):
    """A CA of the test's own and one certificate it signs for 127.0.0.1 (the scheduler's,
    the workers' and the client's)."""
    def openssl(*args):
        command(["openssl", *args], cwd=folder, timeout=120)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
            "/CN=test-ca", "-keyout", "ca.key", "-out", "ca.pem")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "node.key", "-out", "node.csr")
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-extfile", "san.cnf", "-out", "node.pem")
    return folder / "ca.pem", folder / "node.pem", folder / "node.key"


def test_two_workers_over_tls(tmp_path):
    from distributed import LocalCluster
    from distributed.security import Security

    ca, cert, key = (str(p) for p in _certificates(tmp_path))
    security = Security(tls_ca_file=ca, tls_scheduler_cert=cert, tls_scheduler_key=key,
                        tls_worker_cert=cert, tls_worker_key=key, tls_client_cert=cert,
                        tls_client_key=key, require_encryption=True)
    with LocalCluster(n_workers=2, processes=False, protocol="tls://", host="127.0.0.1",
                      security=security, dashboard_address=None) as tls_cluster:
        address = tls_cluster.scheduler_address
        assert address.startswith("tls://127.0.0.1:")
        # without certificates in Dask's configuration: one line, nothing connects
        with pytest.raises(ConfigError, match="is TLS, but Dask's configuration has no "
                                              "distributed.comm.tls.ca-file"):
            with cluster.connect(scheduler=address):
                pass
        tls = {"distributed.comm.tls.ca-file": ca, "distributed.comm.tls.client.cert": cert,
               "distributed.comm.tls.client.key": key}
        with dask.config.set(tls), cluster.connect(scheduler=address) as client:
            assert cluster.check_workers(client, tmp_path) == 2
            assert client.submit(sum, [40, 2]).result(timeout=60) == 42
            assert all(w.startswith("tls://") for w in client.scheduler_info()["workers"])


@pytest.mark.parametrize("address, warned", [("tcp://10.1.2.3:8786", True),
                                             ("tcp://scheduler.example:8786", True),
                                             ("tcp://127.0.0.1:8786", False),
                                             ("tcp://localhost:8786", False)])
def test_plain_tcp_beyond_this_machine_warns_in_one_line(capsys, address, warned):
    cluster.security_for(address)
    err = capsys.readouterr().err
    assert err.count("\n") == (1 if warned else 0), err
    assert err.startswith("warning: ") == warned and ("use tls://" in err) == warned
