"""Redis as the middleware: indirect communication through lists, a set and a channel.

The service logic runs in Python processes; Redis only carries the messages and holds the
shared state (``docs/PROTOCOL.md`` has the wire protocol):

- InsultService (``insult_service``): requests are JSON on the list
  ``<ns>:insults:requests``, each answered on the list its ``reply_to`` names. The insults
  are the set ``<ns>:insults:store`` (SADD makes ``add_insult`` atomic). The process
  holding the lease ``<ns>:insults:broadcaster`` publishes a random insult on the
  channel ``<ns>:insults:broadcast`` every interval; subscribers are plain Redis
  subscribers, so a vanished one costs the service nothing.
- InsultFilter (``filter_worker``): no front process. Clients LPUSH tasks on
  ``<ns>:filter:tasks``; workers compete for them, answer on ``reply_to`` and keep the
  newest results on ``<ns>:filter:results``.
- Echo (``echo_service``): the InsultService's round trip with no logic, the baseline.

Every service consumes its list through the reliable queue of ``transport``: a message
leaves a consumer's processing list only in the atomic step that writes its answer, so a
killed process loses nothing. More processes on the same lists are competing consumers,
which is how the n-node form scales.
"""
