import Foundation
import OrchctlKit

// The commands live in OrchctlKit (so their parsing is unit-tested); this is only the process.
exit(await Orchctl.run(Array(CommandLine.arguments.dropFirst())))
