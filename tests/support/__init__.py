"""Helpers shared by the tests, one module per topic; fixtures stay in the conftest.py files.

The layout (``tests/unit/test_tests_layout.py`` holds it):

- ``tests/unit``, ``tests/integration``, ``tests/e2e`` and ``tests/xla`` hold test modules
  (and ``conftest.py``) only. A test module is named ``test_<package>[_<topic>].py``, where
  ``<package>`` is the code it tests: a top-level package (``app``, ``modelspec``,
  ``training``, ``compile``, ``offline``, ``reliability``, ``benchmarks``, ``neuron_check``),
  a room of the service (``core``, ``http``, ``grpc``, ``codecs``, ``observe``, ``process``,
  ``backends``), or ``deploy``, ``docs`` or ``tests`` for what is not Python code. ``app``
  stands for the service as a whole and for its top-level modules (``app/settings.py``...).
  So ``tests/unit/test_core_batching.py`` tests ``app/core/batching.py`` with plain objects,
  ``tests/e2e/test_process_reload.py`` the process's reloads with real processes.
- A test module imports no other test module and no conftest: what two test modules share
  lives here (``tests.support.*``), or in ``tests.fakes`` (the named test seams that stand in
  for a device or the Neuron SDK).
- Tests import only public names of the project: a name with a leading underscore is the
  module's own business.

The modules here: ``project`` (the checkout, the data set, the CLIs as subprocesses),
``records`` (request records from the data set), ``bodies`` (CSV and Open Inference Protocol
bodies, and their content types), ``answers`` (a refused body's errors), ``oracle`` (the eager
model's answers), ``server`` (a real ``python -m app``), ``grpc`` (tritonclient tensors and a
gRPC server), ``load`` (client threads calling a server until refused), ``loop`` (waiting on an
event loop), ``transport`` (a recording asyncio transport and a small ASGI app), ``operators``
(operator lists), ``scoring`` (bad cells for ``app.score``), ``otlp`` (an OTLP receiver),
``kserve_calls`` (KServe's clients, run as a process of their own), ``doc_examples`` (the
shell examples of the README and docs/) and ``cfn`` (deploy/aws/'s CloudFormation template,
cfn-lint with the project's rules, the template's Rules evaluated).
"""
